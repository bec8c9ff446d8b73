#include "plexd-ctld/stream/event_dispatch.h"

#include <array>

namespace plexd::ctld {
namespace {

// Reconcile-driving types named by the contract, [O+], [N] or the legacy
// agent (§8). Every `peer_*` and `session_*` type also drives a reconcile:
// the taxonomy keeps growing there and a pull is always safe.
constexpr std::array<std::string_view, 4> kReconcileTypes = {
    "node_state_updated", "policy_updated", "bridge_config_updated", "action_request"};
constexpr std::array<std::string_view, 2> kReconcilePrefixes = {"peer_", "session_"};

}  // namespace

EventAction eventAction(std::string_view type) {
  if (type == "signing_key_rotated") return EventAction::rotateSigningKey;
  if (type == "rotate_keys") return EventAction::rotateMeshKeys;
  for (auto t : kReconcileTypes)
    if (type == t) return EventAction::reconcile;
  for (auto p : kReconcilePrefixes)
    if (type.size() > p.size() && type.substr(0, p.size()) == p) return EventAction::reconcile;
  return EventAction::ignore;
}

std::string_view eventActionName(EventAction action) {
  switch (action) {
    case EventAction::rotateSigningKey: return "rotate_signing_key";
    case EventAction::reconcile: return "reconcile";
    case EventAction::rotateMeshKeys: return "rotate_mesh_keys";
    case EventAction::ignore: return "ignore";
  }
  return "unknown";
}

}  // namespace plexd::ctld
