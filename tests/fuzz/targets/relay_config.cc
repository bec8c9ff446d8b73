// Fuzz the bridge relay block decoder (plexd-ctld/relay/relay_config.h):
// never crashes; an accepted block keeps its bounds (ports 1..65535, at most
// kMaxRelayAssignments unique sorted peers, hosts within their length), and
// relayPorts() lists each port once with at most one owner.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <set>
#include <string_view>

#include "plexd-ctld/relay/relay_config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {
void check(bool ok) {
  if (!ok) std::abort();
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace plexd::ctld::relay;
  auto r = parseRelayConfig(std::string_view(reinterpret_cast<const char*>(data), size));
  if (!r || !r->has_value()) return 0;
  const RelayConfig& c = **r;
  check(c.listenPort != 0 && c.assignments.size() <= kMaxRelayAssignments);
  for (size_t i = 0; i < c.assignments.size(); ++i) {
    check(c.assignments[i].port != 0 && !c.assignments[i].host.empty() &&
          c.assignments[i].host.size() <= kMaxRelayHostLen);
    if (i > 0) check(c.assignments[i - 1].peerNodeId < c.assignments[i].peerNodeId);
  }
  RelayPorts p = relayPorts(c);
  std::set<uint16_t> seen;
  for (const auto& port : p.ports) check(seen.insert(port.port).second);
  return 0;
}
