// Fuzz the state snapshot parser (PROTOCOL.md §5.1): never crashes, and
// whatever it accepts keeps its invariants: peers sorted and unique, the
// stored form parses back to the same stored form, and a snapshot diffed
// against itself is empty. Small limits so the bound paths are reached.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "plexd-ctld/reconcile/snapshot.h"
#include "plexd-ctld/reconcile/snapshot_diff.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {

void check(bool ok) {
  if (!ok) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view body(reinterpret_cast<const char*>(data), size);
  plexd::ctld::SnapshotParseOptions o;
  o.limits.maxBytes = 64 * 1024;
  o.limits.maxPeers = 16;
  o.limits.maxRules = 16;
  o.limits.maxStateEntries = 16;
  o.limits.maxStateValueBytes = 256;
  o.limits.maxBridgeBytes = 4096;
  o.limits.maxDepth = 16;
  o.selfNodeId = "0190a8b8-a0c0-7a0a-8a0a-a0a0a0a0a0a3";
  auto s = plexd::ctld::parseSnapshot(body, o);
  if (!s) {
    check(!s.error().text().empty());
    return 0;
  }
  for (size_t i = 1; i < s->peers.size(); ++i) check(s->peers[i - 1].nodeId < s->peers[i].nodeId);
  const std::string stored = plexd::ctld::serializeSnapshot(*s);
  plexd::ctld::SnapshotParseOptions reparse = o;
  reparse.limits.maxBytes = 1024 * 1024;
  auto back = plexd::ctld::parseSnapshot(stored, reparse);
  check(back.ok());
  check(plexd::ctld::serializeSnapshot(*back) == stored);
  check(plexd::ctld::diffSnapshots(&*s, *back).empty());
  check(!plexd::ctld::diffSnapshots(nullptr, *s).empty());
  return 0;
}
