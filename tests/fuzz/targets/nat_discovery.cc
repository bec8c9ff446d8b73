// Fuzz NatDiscovery's datagram path (plexd-ctld/nat/discovery.h): whatever
// arrives on the WireGuard port (netd hands up anything that looks like
// STUN), from whatever source, interleaved with time passing, never crashes,
// keeps at most two transactions outstanding, and a result it reports has an
// endpoint that checkMappedAddress accepts.
//
// Input: records of [selector][len lo][len hi][bytes]. Selector bits: 0..1
// the source (primary server, its other address, a stranger, the second
// server), bit 2 stamp the last request's transaction id into bytes 8..19
// (so responses can match), bits 4..7 advance simulated time by n × 50 ms
// first.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#include "common/clock.h"
#include "common/event.h"
#include "common/log.h"
#include "plexd-ctld/nat/discovery.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {

using namespace plexd;
using namespace plexd::ctld::nat;
using namespace std::chrono_literals;

void check(bool ok) {
  if (!ok) std::abort();
}

struct Recorder final : StunTransport {
  std::vector<uint8_t> last;
  Status send(const SockAddr&, std::span<const uint8_t> datagram) override {
    last.assign(datagram.begin(), datagram.end());
    return {};
  }
};

SockAddr addr(const char* text) { return *SockAddr::parse(text); }

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static bool quiet = [] {
    log::setup("fuzz", log::Level::error);
    return true;
  }();
  (void)quiet;
  auto loop = event::newLoop();
  if (!loop) return 0;
  FakeClock clock;
  Recorder transport;
  NatDiscoveryOptions o;
  o.servers = {"198.51.100.1:3478", "203.0.113.9:3478"};
  o.timeout = 1s;
  o.initialRto = 100ms;
  bool resultOk = true;
  NatDiscovery d(
      loop->get(), clock, transport, o,
      [&](const NatResult& r) { resultOk = resultOk && checkMappedAddress(r.endpoint).ok(); },
      [](const Error&) {});
  if (!d.start()) return 0;
  d.runDue();
  const SockAddr sources[4] = {addr("198.51.100.1:3478"), addr("198.51.100.2:3479"), addr("192.0.2.77:4000"),
                               addr("203.0.113.9:3478")};
  size_t pos = 0;
  while (pos + 3 <= size) {
    const uint8_t sel = data[pos];
    size_t len = size_t{data[pos + 1]} | (size_t{data[pos + 2]} << 8);
    pos += 3;
    if (len > size - pos) len = size - pos;
    std::vector<uint8_t> datagram(data + pos, data + pos + len);
    pos += len;
    if ((sel >> 4) != 0) {
      clock.advance(std::chrono::milliseconds(50 * (sel >> 4)));
      d.runDue();
    }
    if ((sel & 0x04) != 0 && datagram.size() >= 20 && transport.last.size() >= 20)
      std::memcpy(datagram.data() + 8, transport.last.data() + 8, 12);
    d.onDatagram(sources[sel & 0x03], datagram);
    check(d.outstanding() <= 2);
  }
  clock.advance(10s);
  d.runDue();
  check(resultOk);
  return 0;
}
