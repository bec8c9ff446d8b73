// The ctld <-> apid messages (ipc/ctld_apid.h): the key grammars both ends
// enforce and what a receiver refuses before the daemon looks at it.
#include <catch2/catch.hpp>

#include "ipc/channel_spec.h"
#include "ipc/ctld_apid.h"
#include "ipc/wire.h"

using namespace plexd;
using namespace plexd::ipc;
using Catch::Matchers::Contains;

namespace {

template <class M>
std::string refusedOnReceive(const M& m) {
  // The sender's encoder runs validate() too; build the bytes by hand by
  // encoding a valid twin and patching is overkill: check validate() and
  // that decode refuses what encode refused.
  auto st = m.validate();
  REQUIRE_FALSE(st.ok());
  CHECK_FALSE(encodePayload(m).ok());
  return st.error().text();
}

}  // namespace

TEST_CASE("report keys and secret names follow the protocol grammars") {
  CHECK(validReportKey("a"));
  CHECK(validReportKey("status.mesh"));
  CHECK(validReportKey("app-1_x.y"));
  CHECK(validReportKey("a" + std::string(127, 'z')));
  CHECK_FALSE(validReportKey("a" + std::string(128, 'z')));
  CHECK_FALSE(validReportKey(""));
  CHECK_FALSE(validReportKey("1abc"));
  CHECK_FALSE(validReportKey("Abc"));
  CHECK_FALSE(validReportKey("a/b"));
  CHECK_FALSE(validReportKey("a b"));
  CHECK_FALSE(validReportKey("../x"));
  CHECK(validSecretName("db-password"));
  CHECK(validSecretName("a" + std::string(62, '0')));
  CHECK_FALSE(validSecretName("a" + std::string(63, '0')));
  CHECK_FALSE(validSecretName("db.password"));  // dots are report-only
  CHECK_FALSE(validSecretName("_x"));
  CHECK_FALSE(validSecretName(std::string("a\0b", 3)));
}

TEST_CASE("report_change round-trips and refuses bad keys and inconsistent deletions") {
  ReportChange c;
  c.key = "app.health";
  c.value = R"({"ok":true})";
  auto bytes = encodePayload(c);
  REQUIRE(bytes.ok());
  auto back = decodePayload<ReportChange>(*bytes);
  REQUIRE(back.ok());
  CHECK(back->key == c.key);
  CHECK(back->value == c.value);
  c.key = "App";
  CHECK_THAT(refusedOnReceive(c), Contains("report key"));
  c.key = "app";
  c.deleted = true;
  CHECK_THAT(refusedOnReceive(c), Contains("value on a deletion"));
  c.value.clear();
  CHECK(c.validate().ok());
  c.deleted = false;
  CHECK_THAT(refusedOnReceive(c), Contains("empty value"));
  c.value = std::string(kMaxReportValueLen + 1, 'x');
  auto big = encodePayload(c);  // the encoder does not check Max; the receiver does
  REQUIRE(big.ok());
  auto refused = decodePayload<ReportChange>(*big);
  REQUIRE_FALSE(refused.ok());
  CHECK_THAT(refused.error().text(), Contains("value"));
}

TEST_CASE("secret_reply pieces stay inside the announced size, failures carry no bytes") {
  SecretReply r;
  r.status = 200;
  r.total_size = 10;
  r.offset = 4;
  r.value = "123456";
  CHECK(r.validate().ok());
  r.value = "1234567";
  CHECK_THAT(refusedOnReceive(r), Contains("exceeds total size"));
  SecretReply f;
  f.status = 404;
  f.error = "secret not found";
  CHECK(f.validate().ok());
  f.value = "x";
  f.total_size = 1;
  CHECK_THAT(refusedOnReceive(f), Contains("value on a failed fetch"));
  SecretRequest q;
  q.name = "Bad";
  CHECK_THAT(refusedOnReceive(q), Contains("secret name"));
}

TEST_CASE("the ctld-apid channel lets each side send only its own messages") {
  const ChannelSpec& s = kCtldApid;
  auto from = [&](MsgType t, Peer p) {
    const Permission* perm = s.find(t);
    return perm != nullptr && perm->allows(p);
  };
  CHECK(from(MsgType::node_state_header, Peer::ctld));
  CHECK_FALSE(from(MsgType::node_state_header, Peer::apid));
  CHECK(from(MsgType::node_state_entry, Peer::ctld));
  CHECK_FALSE(from(MsgType::node_state_entry, Peer::apid));
  CHECK(from(MsgType::secret_request, Peer::apid));
  CHECK_FALSE(from(MsgType::secret_request, Peer::ctld));
  CHECK(from(MsgType::secret_reply, Peer::ctld));
  CHECK_FALSE(from(MsgType::secret_reply, Peer::apid));
  CHECK(from(MsgType::report_change, Peer::apid));
  CHECK(from(MsgType::peers_request, Peer::apid));
  CHECK(from(MsgType::policy_request, Peer::apid));
  CHECK_FALSE(from(MsgType::policy_reply, Peer::apid));
  // netd's messages are unknown on this channel.
  CHECK(s.find(MsgType::wg_peer) == nullptr);
  CHECK(s.find(MsgType::fw_rule) == nullptr);
  CHECK(kCtldNetd.find(MsgType::secret_request) == nullptr);
}
