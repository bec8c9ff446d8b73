// Fuzz relayd's registration handler (plexd-relayd/registrar.h
// Registrar::handle) behind the parser: rate limits, the hello's size rule,
// key lookup, MAC and cookie checks, binding. Any datagram on a relay port
// must never crash, never bind without a valid MAC and cookie (the fuzzer
// cannot forge those: no binding may ever appear), and never answer with more
// bytes than it received unless the request was authenticated.
// Answers go to 127.0.0.1:9 (discard) only: the source is fixed.
// Input: byte 0 bit 0 = advance the fake clock a second first; the rest is
// the datagram. A known node ("node-a") and the relay key are set up once.
#include <systemd/sd-event.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>

#include "common/clock.h"
#include "common/netaddr.h"
#include "plexd-relayd/engine.h"
#include "plexd-relayd/registrar.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {

using namespace plexd;
using namespace plexd::relayd;

struct World {
  sd_event* loop = nullptr;
  FakeClock clock;
  std::unique_ptr<RelayEngine> engine;
  std::unique_ptr<Registrar> registrar;
  PortId port = 0;
  SockAddr source;
  World() {
    if (sd_event_new(&loop) < 0) std::abort();
    auto e = RelayEngine::create(loop, RelayLimits{}, clock);
    if (!e) std::abort();
    engine = std::move(*e);
    SockAddr bindAt;  // 127.0.0.1, a port the kernel picks
    bindAt.family = 4;
    bindAt.addr[0] = 127;
    bindAt.addr[3] = 1;
    auto p = engine->addPort(bindAt, NodeId{2});
    if (!p) std::abort();
    port = *p;
    registrar = std::make_unique<Registrar>(*engine, clock);
    std::array<uint8_t, 32> relayKey{};
    relayKey.fill(0xB1);
    registrar->setRelayPublicKey(relayKey);
    std::array<uint8_t, 32> nodeKey{};
    nodeKey.fill(0x0A);
    registrar->setNodeKey("node-a", NodeId{1}, nodeKey);
    source = *SockAddr::parse("127.0.0.1:9");
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static World w;
  if (size < 1) return 0;
  if ((data[0] & 1) != 0) w.clock.advance(std::chrono::seconds(1));
  const RegistrarStats before = w.registrar->stats();
  (void)w.registrar->handle(w.port, w.source, data + 1, size - 1);
  const RegistrarStats after = w.registrar->stats();
  if (after.registrations != before.registrations) std::abort();  // forged a MAC and a cookie?
  if (w.engine->stats().bindings != 0) std::abort();
  return 0;
}
