// The UAPI encoder and get=1 parser (uapi_protocol.h), and UapiBackend's
// request/reply handling against a scripted UAPI server on a temporary
// socket (no wireguard-go, no kernel objects).
#include "plexd-netd/wg/uapi_protocol.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "common/base64.h"
#include "common/fd.h"
#include "plexd-netd/wg/uapi_backend.h"
#include "tests/unit/temp_dir.h"

using namespace plexd;
using namespace plexd::netd;

namespace {

WgKey key(uint8_t fill) {
  WgKey k{};
  k.fill(fill);
  return k;
}

std::string hex(const WgKey& k) { return hexEncode(k); }

WgPeerOp upsert(uint8_t fill) {
  WgPeerOp op;
  op.peer.public_key = key(fill);
  op.peer.allowed_ips = {*IpPrefix::parse("10.99.0.0/24"), *IpPrefix::parse("fd00::1/128")};
  op.peer.endpoint = *SockAddr::parse("192.0.2.7:51820");
  op.peer.keepalive_s = 25;
  return op;
}

std::string encode(const WgPeerOp& op) {
  std::string out;
  appendPeerOp(out, op);
  return out;
}

// A reply shaped exactly like wireguard-go 0.0.20220316's (captured on this
// machine), peers in its (random) map order.
const std::string kPrivHex = "a8aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa6a";
const std::string kPskHex = "00000000000000000000000000000000000000000000000000000000000000aa";

std::string realReply() {
  return "private_key=" + kPrivHex +
         "\n"
         "listen_port=51999\n"
         "fwmark=7\n"
         "public_key=2222222222222222222222222222222222222222222222222222222222222222\n"
         "preshared_key=0000000000000000000000000000000000000000000000000000000000000000\n"
         "protocol_version=1\n"
         "last_handshake_time_sec=0\n"
         "last_handshake_time_nsec=0\n"
         "tx_bytes=0\n"
         "rx_bytes=0\n"
         "persistent_keepalive_interval=0\n"
         "allowed_ip=10.2.0.0/24\n"
         "public_key=1111111111111111111111111111111111111111111111111111111111111111\n"
         "preshared_key=0000000000000000000000000000000000000000000000000000000000000000\n"
         "protocol_version=1\n"
         "endpoint=[fe80::1]:5000\n"
         "last_handshake_time_sec=1700000000\n"
         "last_handshake_time_nsec=123456789\n"
         "tx_bytes=1184\n"
         "rx_bytes=92\n"
         "persistent_keepalive_interval=25\n"
         "allowed_ip=fd00::1/128\n"
         "allowed_ip=10.1.0.0/16\n"
         "errno=0\n"
         "\n";
}

Result<WgDeviceState> parseAll(std::string_view text, UapiLimits limits = {}) {
  UapiGetParser p(limits);
  if (auto st = p.feed(text); !st) return st.takeError();
  return p.finish();
}

// Replaces the first line starting with `prefix` by `with` ("" removes it).
std::string replaceLine(std::string text, const std::string& prefix, const std::string& with) {
  auto at = text.find(prefix);
  REQUIRE(at != std::string::npos);
  auto end = text.find('\n', at);
  text.replace(at, end + 1 - at, with.empty() ? "" : with + "\n");
  return text;
}

std::string errorOf(std::string_view text, UapiLimits limits = {}) {
  auto r = parseAll(text, limits);
  REQUIRE_FALSE(r.ok());
  return r.error().text();
}

}  // namespace

TEST_CASE("an upsert is encoded as public_key, replace_allowed_ips, endpoint, keepalive, allowed_ip lines") {
  CHECK(encode(upsert(0x11)) == "public_key=" + hex(key(0x11)) +
                                    "\n"
                                    "replace_allowed_ips=true\n"
                                    "endpoint=192.0.2.7:51820\n"
                                    "persistent_keepalive_interval=25\n"
                                    "allowed_ip=10.99.0.0/24\n"
                                    "allowed_ip=fd00::1/128\n");
}

TEST_CASE("an upsert writes only what it is asked to, and never update_only") {
  auto op = upsert(0x11);
  op.peer.endpoint = *SockAddr::parse("[2001:db8::5]:443");
  CHECK(encode(op).find("endpoint=[2001:db8::5]:443\n") != std::string::npos);

  op.replace_allowed_ips = false;
  op.set_endpoint = false;
  op.set_keepalive = false;
  CHECK(encode(op) == "public_key=" + hex(key(0x11)) + "\n");

  op = upsert(0x11);
  op.peer.endpoint = {};  // none: leave the roamed endpoint alone
  op.peer.keepalive_s = 0;
  op.peer.allowed_ips.clear();
  CHECK(encode(op) == "public_key=" + hex(key(0x11)) + "\nreplace_allowed_ips=true\npersistent_keepalive_interval=0\n");
  CHECK(encode(upsert(0x11)).find("update_only") == std::string::npos);
}

TEST_CASE("a remove is encoded as public_key and remove=true only") {
  auto op = upsert(0xab);
  op.kind = WgPeerOp::Kind::remove;
  CHECK(encode(op) == "public_key=" + hex(key(0xab)) + "\nremove=true\n");
}

TEST_CASE("ops with a bad prefix, a bad endpoint or a zero key are refused before encoding") {
  auto op = upsert(1);
  CHECK(validatePeerOp(op).ok());
  op.peer.allowed_ips[0].prefix_len = 33;
  CHECK_FALSE(validatePeerOp(op).ok());
  op = upsert(1);
  op.peer.allowed_ips[0].addr[3] = 1;  // host bit in 10.99.0.0/24
  CHECK(validatePeerOp(op).error().message().find("host bits") != std::string::npos);
  op = upsert(1);
  op.peer.endpoint.port = 0;
  CHECK_FALSE(validatePeerOp(op).ok());
  op.set_endpoint = false;  // not written, so not checked
  CHECK(validatePeerOp(op).ok());
  op = upsert(0);
  CHECK(validatePeerOp(op).error().message() == "peer public key is all zero");
}

TEST_CASE("device settings keep the private key's hex in a SecretString between head and tail") {
  auto priv = SecretBytes::fromHex(kPrivHex);
  REQUIRE(priv.ok());
  WgDeviceSettings s;
  s.private_key = &*priv;
  s.set_listen_port = true;
  s.listen_port = 51820;
  auto r = encodeSettings(s);
  REQUIRE(r.ok());
  CHECK(r->head == "set=1\nprivate_key=");
  CHECK(r->key_hex.view() == kPrivHex);
  CHECK(r->tail == "\nlisten_port=51820\n\n");
  CHECK(r->head.find(kPrivHex) == std::string::npos);
  CHECK(r->tail.find(kPrivHex) == std::string::npos);

  WgDeviceSettings portOnly;
  portOnly.set_listen_port = true;
  portOnly.listen_port = 1;
  r = encodeSettings(portOnly);
  REQUIRE(r.ok());
  CHECK(r->head + std::string(r->key_hex.view()) + r->tail == "set=1\nlisten_port=1\n\n");
  r = encodeSettings(WgDeviceSettings{});
  REQUIRE(r.ok());
  CHECK(r->head + r->tail == "set=1\n\n");

  auto shortKey = SecretBytes::fromHex(kPrivHex.substr(0, 62));
  s.private_key = &*shortKey;
  r = encodeSettings(s);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().message() == "private key must be 32 bytes, not 31");
}

TEST_CASE("set replies: errno=0 is success, errno=-N names the failure, anything else is a protocol error") {
  CHECK(parseSetReply("errno=0\n\n", "x").ok());
  auto inval = parseSetReply("errno=-22\n\n", "applying 3 peer operations");
  REQUIRE_FALSE(inval.ok());
  CHECK(inval.error().errnum() == EINVAL);
  CHECK(inval.error().message().find("applying 3 peer operations") != std::string::npos);
  CHECK(parseSetReply("errno=-98\n\n", "x").error().errnum() == EADDRINUSE);
  CHECK(parseSetReply("errno=-55\n\n", "x").error().errnum() == 55);
  for (std::string bad : {"errno=0\n", "errno=\n\n", "errno=x\n\n", "errno=0 \n\n", "ok\n\n", "errno=0\n\nx", ""})
    CHECK(parseSetReply(bad, "x").error().errnum() == EPROTO);
}

TEST_CASE("a real get=1 reply parses into sorted peers with endpoint, handshake, counters and allowed IPs") {
  UapiGetParser p;
  REQUIRE(p.feed(realReply()).ok());
  REQUIRE(p.done());
  auto dev = p.finish();
  REQUIRE(dev.ok());
  CHECK(dev->has_private_key);
  CHECK(dev->public_key == WgKey{});  // derived by the backend, not the parser
  CHECK(p.privateKey().equals(*SecretBytes::fromHex(kPrivHex)));
  CHECK(dev->listen_port == 51999);
  CHECK(dev->fwmark == 7);
  REQUIRE(dev->peers.size() == 2);
  const auto& a = dev->peers[0];
  CHECK(a.config.public_key == key(0x11));
  CHECK(a.config.endpoint.str() == "[fe80::1]:5000");
  CHECK(a.config.keepalive_s == 25);
  CHECK(a.last_handshake_ms == 1700000000123);
  CHECK(a.tx_bytes == 1184);
  CHECK(a.rx_bytes == 92);
  REQUIRE(a.config.allowed_ips.size() == 2);
  CHECK(a.config.allowed_ips[0].str() == "10.1.0.0/16");  // sorted: v4 before v6
  CHECK(a.config.allowed_ips[1].str() == "fd00::1/128");
  const auto& b = dev->peers[1];
  CHECK(b.config.public_key == key(0x22));
  CHECK(b.config.endpoint.empty());
  CHECK(b.last_handshake_ms == 0);
}

TEST_CASE("the get=1 parser gives the same result however the reply is split") {
  const std::string text = realReply();
  auto whole = parseAll(text);
  REQUIRE(whole.ok());
  for (size_t step : {1u, 2u, 7u, 64u, 65u}) {
    UapiGetParser p;
    for (size_t at = 0; at < text.size(); at += step) REQUIRE(p.feed(std::string_view(text).substr(at, step)).ok());
    auto dev = p.finish();
    REQUIRE(dev.ok());
    REQUIRE(dev->peers.size() == whole->peers.size());
    for (size_t i = 0; i < dev->peers.size(); ++i) {
      CHECK(dev->peers[i].config == whole->peers[i].config);
      CHECK(dev->peers[i].last_handshake_ms == whole->peers[i].last_handshake_ms);
    }
  }
}

TEST_CASE("an empty device and a device without a key parse") {
  auto dev = parseAll("listen_port=58010\nerrno=0\n\n");
  REQUIRE(dev.ok());
  CHECK_FALSE(dev->has_private_key);
  CHECK(dev->peers.empty());
  CHECK(parseAll("errno=0\n\n").ok());
}

TEST_CASE("a get=1 answered with errno=-N is an error with that errno") {
  auto r = parseAll("errno=-22\n\n");
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().errnum() == EINVAL);
}

TEST_CASE("get=1 replies beyond a bound are refused") {
  UapiLimits small;
  small.max_peers = 1;
  CHECK_THAT(errorOf(realReply(), small), Catch::Contains("more than 1 peers"));
  small = {};
  small.max_allowed_ips = 2;
  CHECK_THAT(errorOf(realReply(), small), Catch::Contains("more than 2 allowed IPs"));
  small = {};
  small.max_line_bytes = 70;  // a key line is 75
  CHECK_THAT(errorOf(realReply(), small), Catch::Contains("line longer than 70 bytes"));
  small = {};
  small.max_reply_bytes = 100;
  CHECK_THAT(errorOf(realReply(), small), Catch::Contains("reply longer than 100 bytes"));
  // A line split over chunks is bounded too.
  UapiLimits tiny;
  tiny.max_line_bytes = 16;
  UapiGetParser p(tiny);
  REQUIRE(p.feed("listen_port=").ok());
  CHECK_FALSE(p.feed("51820000").ok());
}

TEST_CASE("malformed or unknown get=1 lines are refused with the line number") {
  const std::string r = realReply();
  struct Case {
    std::string text;
    std::string expect;
  };
  const std::string k1 = "public_key=1111111111111111111111111111111111111111111111111111111111111111";
  std::vector<Case> cases = {
      {replaceLine(r, "fwmark=", "mtu=1420"), "line 3: unknown device key 'mtu'"},
      {replaceLine(r, "rx_bytes=92", "rx_packets=1"), "unknown peer key 'rx_packets'"},
      {replaceLine(r, "fwmark=", "fwmark"), "line 3: not a key=value line"},
      {replaceLine(r, "fwmark=", ""), ""},  // (control: still valid)
      {replaceLine(r, "fwmark=", "listen_port=1"), "listen_port repeated"},
      {replaceLine(r, "rx_bytes=92", "tx_bytes=1"), "tx_bytes repeated for one peer"},
      {replaceLine(r, "listen_port=", "listen_port=70000"), "listen_port='70000': not a port"},
      {replaceLine(r, "listen_port=", "listen_port=-1"), "not a port"},
      {replaceLine(r, "listen_port=", "listen_port=+1"), "not a port"},
      {replaceLine(r, "fwmark=", "fwmark=4294967296"), "not a 32-bit number"},
      {replaceLine(r, "protocol_version=1", "protocol_version=2"), "only protocol version 1 exists"},
      {replaceLine(r, "last_handshake_time_nsec=123", "last_handshake_time_nsec=1000000000"), "not 0-999999999 ns"},
      {replaceLine(r, "last_handshake_time_sec=1700", "last_handshake_time_sec=18446744073709551615"),
       "not a time in seconds"},
      {replaceLine(r, "rx_bytes=92", "rx_bytes=18446744073709551616"), "not a byte count"},
      {replaceLine(r, "persistent_keepalive_interval=25", "persistent_keepalive_interval=65536"), "not 0-65535 s"},
      {replaceLine(r, "endpoint=", "endpoint=[fe80::1%eth0]:5000"), "endpoint='[fe80::1%eth0]:5000'"},
      {replaceLine(r, "endpoint=", "endpoint=192.0.2.1:0"), "invalid port"},
      {replaceLine(r, "allowed_ip=10.1", "allowed_ip=10.1.0.1/16"), "host bits"},
      {replaceLine(r, "allowed_ip=10.1", "allowed_ip=fd00::1/128"), "an allowed IP is listed twice"},
      {replaceLine(r, "public_key=1111", "public_key=" + std::string(64, 'A')), "not 64 lowercase hex digits"},
      {replaceLine(r, "public_key=1111", "public_key=1111"), "not 64 lowercase hex digits"},
      {replaceLine(r, "public_key=1111", "public_key=2222222222222222222222222222222222222222222222222222222222222222"),
       "is listed twice"},
      {replaceLine(r, "errno=0", "errno=zero"), "errno='zero': not an errno value"},
      {replaceLine(r, "errno=0", ""), "blank line before errno="},
      {r.substr(0, r.size() - 1) + "x\n", "expected the blank line that ends the reply"},
      {r + "errno=0\n", "data after the end of the reply"},
      {r.substr(0, r.size() - 1), "the reply ended before its errno= line"},
      {"allowed_ip=10.0.0.0/8\nerrno=0\n\n", "unknown device key 'allowed_ip'"},
      {"\x01\xff=1\nerrno=0\n\n", "unknown device key '\\x01\\xff'"},
  };
  for (const auto& c : cases) {
    INFO(c.text);
    auto res = parseAll(c.text);
    if (c.expect.empty()) {
      CHECK(res.ok());
      continue;
    }
    REQUIRE_FALSE(res.ok());
    CHECK(res.error().errnum() == EPROTO);
    CHECK_THAT(res.error().text(), Catch::Contains(c.expect) && Catch::Contains("invalid get=1 reply"));
  }
}

TEST_CASE("a failed get=1 parser stays failed") {
  UapiGetParser p;
  CHECK_FALSE(p.feed("nonsense\n").ok());
  CHECK_FALSE(p.feed("errno=0\n\n").ok());
  CHECK_FALSE(p.finish().ok());
}

TEST_CASE("no error text ever contains private or preshared key material") {
  const std::string r = realReply();
  const std::string upper = "A8AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA6A";
  const std::vector<std::string> texts = {
      replaceLine(r, "private_key=", "private_key=" + upper),
      replaceLine(r, "private_key=", "private_key=" + kPrivHex.substr(0, 63)),
      replaceLine(r, "private_key=", "private_key=" + kPrivHex + "0"),
      replaceLine(r, "private_key=", "private_key=" + kPrivHex + "\nprivate_key=" + kPrivHex),
      replaceLine(r, "preshared_key=", "preshared_key=" + kPskHex.substr(1)),
      replaceLine(r, "preshared_key=", "preshared_key=" + kPskHex + "\npreshared_key=" + kPskHex),
      replaceLine(r, "private_key=", "private_keyx=" + kPrivHex),
      replaceLine(r, "private_key=", kPrivHex),
  };
  for (const auto& t : texts) {
    const std::string e = errorOf(t);
    INFO(e);
    CHECK(e.find(kPrivHex.substr(8, 16)) == std::string::npos);
    CHECK(e.find(upper.substr(8, 16)) == std::string::npos);
    CHECK(e.find(kPskHex.substr(40, 16)) == std::string::npos);
  }
}

// ---- UapiBackend against a scripted server ----

namespace {

// Serves `replies` in order, one per connection, on <dir>/<if>.sock and
// records each request (read up to its terminating blank line).
class ScriptedServer {
 public:
  ScriptedServer(const std::string& path, std::vector<std::string> replies, bool hang = false)
      : path_(path), replies_(std::move(replies)), hang_(hang) {
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    path.copy(sa.sun_path, sizeof sa.sun_path - 1);
    listen_.reset(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    REQUIRE(bind(listen_.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0);
    REQUIRE(::listen(listen_.get(), 8) == 0);
    thread_ = std::thread([this] { run(); });
  }
  ~ScriptedServer() {
    stop_ = true;
    thread_.join();
    unlink(path_.c_str());
  }
  std::vector<std::string> requests() {
    stop_ = true;
    thread_.join();
    thread_ = std::thread([] {});
    return requests_;
  }

 private:
  void run() {
    for (const auto& reply : replies_) {
      pollfd pfd{listen_.get(), POLLIN, 0};
      while (!stop_ && poll(&pfd, 1, 20) == 0) {
      }
      if (stop_) return;
      UniqueFd c(accept4(listen_.get(), nullptr, nullptr, SOCK_CLOEXEC));
      std::string req;
      char buf[65536];
      while (req.find("\n\n") == std::string::npos) {
        ssize_t n = recv(c.get(), buf, sizeof buf, 0);
        if (n <= 0) break;
        req.append(buf, static_cast<size_t>(n));
      }
      requests_.push_back(req);
      if (hang_) {
        while (!stop_) poll(nullptr, 0, 20);
        return;
      }
      static_cast<void>(send(c.get(), reply.data(), reply.size(), MSG_NOSIGNAL));
    }
  }

  std::string path_;
  std::vector<std::string> replies_;
  bool hang_;
  UniqueFd listen_;
  std::atomic<bool> stop_{false};
  std::vector<std::string> requests_;
  std::thread thread_;
};

using TempDir = plexd::test::TempDir;

UapiBackendOptions scriptedOptions(const TempDir& dir) {
  UapiBackendOptions o;
  o.ifname = "plxunit0";
  o.socket_dir = dir.path;
  o.io_timeout = std::chrono::milliseconds(300);
  return o;
}

}  // namespace

TEST_CASE("UapiBackend reads, configures and applies through the socket, one request each") {
  TempDir dir;
  UapiBackend b(scriptedOptions(dir));
  ScriptedServer server(b.socketPath(), {realReply(), "errno=0\n\n", "errno=-22\n\n", "errno=0\n\n"});

  auto dev = b.read();
  REQUIRE(dev.ok());
  CHECK(dev->peers.size() == 2);
  CHECK(dev->public_key != WgKey{});  // derived from private_key

  std::vector<WgPeerOp> ops = {upsert(0x33), upsert(0x11)};
  ops[1].kind = WgPeerOp::Kind::remove;
  REQUIRE(b.apply(ops).ok());  // the count is known from read(): no second read

  auto bad = b.apply(ops);
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error().errnum() == EINVAL);
  CHECK_THAT(bad.error().text(),
             Catch::Contains("interface plxunit0") && Catch::Contains("applying 2 peer operations"));

  auto priv = SecretBytes::fromHex(kPrivHex);
  WgDeviceSettings s;
  s.private_key = &*priv;
  REQUIRE(b.configure(s).ok());

  auto reqs = server.requests();
  REQUIRE(reqs.size() == 4);
  CHECK(reqs[0] == "get=1\n\n");
  CHECK(reqs[1] == "set=1\n" + encode(ops[0]) + encode(ops[1]) + "\n");
  CHECK(reqs[3] == "set=1\nprivate_key=" + kPrivHex + "\n\n");
  CHECK(b.stats().messages == 4);
}

TEST_CASE("UapiBackend refuses more than 65,536 peers before connecting") {
  TempDir dir;
  UapiBackend b(scriptedOptions(dir));  // no server at all: any write would fail differently
  std::vector<WgPeerOp> ops(kWireguardGoMaxPeers + 1);
  for (size_t i = 0; i < ops.size(); ++i) {
    ops[i] = upsert(1);
    ops[i].peer.public_key[0] = static_cast<uint8_t>(i);
    ops[i].peer.public_key[1] = static_cast<uint8_t>(i >> 8);
    ops[i].peer.public_key[2] = static_cast<uint8_t>(i >> 16);
  }
  auto st = b.apply(ops);
  REQUIRE_FALSE(st.ok());
  CHECK(st.error().errnum() == E2BIG);
  CHECK_THAT(st.error().text(), Catch::Contains("at most 65536") && Catch::Contains("nothing was written"));
  CHECK(b.stats().messages == 0);
  CHECK(b.maxPeers() == kWireguardGoMaxPeers);
}

TEST_CASE("a hung wireguard-go costs one io_timeout and a clear error, not a frozen netd") {
  TempDir dir;
  UapiBackend b(scriptedOptions(dir));
  ScriptedServer server(b.socketPath(), {"never sent"}, /*hang=*/true);
  auto t0 = std::chrono::steady_clock::now();
  auto dev = b.read();
  auto took = std::chrono::steady_clock::now() - t0;
  REQUIRE_FALSE(dev.ok());
  CHECK(dev.error().errnum() == ETIMEDOUT);
  CHECK_THAT(dev.error().text(), Catch::Contains("did not answer") && Catch::Contains("300 ms"));
  CHECK(took < std::chrono::seconds(2));
}

TEST_CASE("UapiBackend reports a missing socket as not present, naming the path") {
  TempDir dir;
  UapiBackend b(scriptedOptions(dir));
  CHECK_FALSE(b.present());
  auto dev = b.read();
  REQUIRE_FALSE(dev.ok());
  CHECK_THAT(dev.error().text(), Catch::Contains(dir.path + "/plxunit0.sock"));
}

TEST_CASE("near the peer limit UapiBackend counts exactly, including the peak in the middle of the ops") {
  TempDir dir;
  auto opts = scriptedOptions(dir);
  opts.max_peers = 3;
  UapiBackend b(std::move(opts));
  // realReply() holds peers 0x11 and 0x22. Nothing is known yet, so each
  // apply reads first.
  ScriptedServer server(b.socketPath(), {realReply(), realReply(), realReply(), "errno=0\n\n"});
  auto removeOf = [](uint8_t fill) {
    auto op = upsert(fill);
    op.kind = WgPeerOp::Kind::remove;
    return op;
  };

  std::vector<WgPeerOp> twoNew = {upsert(0x33), upsert(0x44)};  // 4 peers
  auto st = b.apply(twoNew);
  REQUIRE_FALSE(st.ok());
  CHECK(st.error().errnum() == E2BIG);
  CHECK_THAT(st.error().text(), Catch::Contains("4 peers"));

  std::vector<WgPeerOp> peakFirst = {upsert(0x33), upsert(0x44), removeOf(0x11)};  // 3 at the end, 4 on the way
  CHECK(b.apply(peakFirst).error().errnum() == E2BIG);

  std::vector<WgPeerOp> removeFirst = {removeOf(0x11), upsert(0x33), upsert(0x44)};  // never above 3
  REQUIRE(b.apply(removeFirst).ok());

  auto reqs = server.requests();
  REQUIRE(reqs.size() == 4);
  CHECK(reqs[0] == "get=1\n\n");
  CHECK(reqs[1] == "get=1\n\n");
  CHECK(reqs[2] == "get=1\n\n");
  CHECK(reqs[3].rfind("set=1\npublic_key=" + hex(key(0x11)) + "\nremove=true\n", 0) == 0);
}
