// What ctld does with a verified event, by envelope `type` (PROTOCOL.md §8).
// Data, not scattered ifs: the stream client looks the type up here and
// calls the matching owner callback.
#pragma once

#include <string_view>

namespace plexd::ctld {

enum class EventAction {
  rotateSigningKey,    // signing_key_rotated: replace the verifier's keys (§7.4)
  reconcile,           // pull state (§5.2)
  rotateMeshKeys,      // rotate_keys: start §19.1 rotation, and reconcile
  ignore,              // unknown type: log at debug (§8)
};

EventAction eventAction(std::string_view type);
std::string_view eventActionName(EventAction action);

}  // namespace plexd::ctld
