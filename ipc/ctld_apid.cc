#include "ipc/ctld_apid.h"

namespace plexd::ipc {

namespace {

bool lowerAlpha(char c) { return c >= 'a' && c <= 'z'; }
bool digit(char c) { return c >= '0' && c <= '9'; }

}  // namespace

bool validSecretName(std::string_view name) {
  if (name.empty() || name.size() > 63 || !lowerAlpha(name[0])) return false;
  for (char c : name.substr(1)) {
    if (!lowerAlpha(c) && !digit(c) && c != '_' && c != '-') return false;
  }
  return true;
}

bool validReportKey(std::string_view key) {
  if (key.empty() || key.size() > 128 || !lowerAlpha(key[0])) return false;
  for (char c : key.substr(1)) {
    if (!lowerAlpha(c) && !digit(c) && c != '.' && c != '_' && c != '-') return false;
  }
  return true;
}

Status NodeStateEntry::validate() const {
  if (key.empty()) return Error("empty key");
  return {};
}

Status SecretReply::validate() const {
  if (static_cast<uint64_t>(offset) + value.size() > total_size) {
    return Error("piece [" + std::to_string(offset) + ", +" + std::to_string(value.size()) + ") exceeds total size " +
                 std::to_string(total_size));
  }
  if (status != 200 && (!value.empty() || total_size != 0 || more_id != 0)) return Error("value on a failed fetch");
  return {};
}

Status SecretRequest::validate() const {
  if (!validSecretName(name)) return Error("secret name does not match ^[a-z][a-z0-9_-]{0,62}$");
  return {};
}

Status ReportChange::validate() const {
  if (!validReportKey(key)) return Error("report key does not match ^[a-z][a-z0-9._-]{0,127}$");
  if (deleted && !value.empty()) return Error("value on a deletion");
  if (!deleted && value.empty()) return Error("empty value (a payload is at least one JSON token)");
  return {};
}

Status PolicyReply::validate() const {
  if (static_cast<uint64_t>(offset) + json.size() > total_size) return Error("piece exceeds total size");
  return {};
}

}  // namespace plexd::ipc
