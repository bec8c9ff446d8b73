// What the node API asks plexd-ctld (ipc/ctld_apid.h), as an interface so
// NodeApi runs against a fake in unit tests and the fuzzer. The real one is
// CtldLink (ctld_link.h), which pages, assembles and times out.
//
// Every callback runs exactly once on the loop thread, possibly before the
// call returns (a fake may answer at once). An Error means ctld did not
// answer (not connected, channel closed, timeout, protocol trouble); an
// answer ctld gave, even a refusal, is a value.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "common/result.h"
#include "ipc/ctld_apid.h"

namespace plexd::apid {

// The node API's answer when no ctld channel is up.
inline constexpr std::string_view kCtldNotConnected = "plexd-ctld is not connected";

// The whole peer list, assembled from pages.
struct PeerList {
  bool stats = false;  // netd answered for every page
  std::vector<ipc::PeerInfo> peers;
};

// A secret as ctld answered it. value holds the plaintext only on status 200;
// it is wiped when this object goes (and when moved from).
struct SecretAnswer {
  uint16_t status = 0;
  std::string error;
  uint32_t version = 0;
  uint32_t retryAfterS = 0;
  std::string value;

  SecretAnswer() = default;
  SecretAnswer(SecretAnswer&& o) noexcept;
  SecretAnswer& operator=(SecretAnswer&& o) noexcept;
  SecretAnswer(const SecretAnswer&) = delete;
  SecretAnswer& operator=(const SecretAnswer&) = delete;
  ~SecretAnswer();
};

// Wipes s's whole buffer (capacity, not only size: moved-from short strings
// keep their bytes).
void wipeString(std::string& s);

class CtldClient {
 public:
  virtual ~CtldClient() = default;

  // A ctld channel is up (handshake done) right now.
  virtual bool connected() const = 0;
  // ctld completed a handshake at least once since start (readiness).
  virtual bool everConnected() const = 0;

  virtual void status(std::function<void(Result<ipc::AgentStatusReply>)> done) = 0;
  virtual void peers(std::function<void(Result<PeerList>)> done) = 0;
  // The active policy block as compact JSON ("{}" when none).
  virtual void policy(std::function<void(Result<std::string>)> done) = 0;
  // version 0 = the current one.
  virtual void secret(const std::string& name, uint32_t version, std::function<void(Result<SecretAnswer>)> done) = 0;
  virtual void reportChange(const ipc::ReportChange& change, std::function<void(Result<ipc::ReportAck>)> done) = 0;
};

}  // namespace plexd::apid
