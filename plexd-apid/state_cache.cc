#include "plexd-apid/state_cache.h"

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>

#include <limits>

#include "common/atomic_file.h"
#include "common/base64.h"
#include "common/crypto.h"
#include "common/json.h"
#include "common/log.h"
#include "common/time_format.h"
#include "plexd-apid/json_out.h"
#include "plexd-apid/payload.h"

namespace plexd::apid {

namespace {

constexpr size_t kMaxDataFile = 512 * 1024;    // a 64 KiB value escaped as \u00XX at worst
constexpr size_t kMaxReportFile = 64 * 1024;
constexpr size_t kMaxSecretsFile = 1024 * 1024;
constexpr mode_t kFileMode = 0600;

bool plainChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
         c == '-';
}

bool alnum(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'); }

Status ensureDir(const std::string& path) {
  if (::mkdir(path.c_str(), 0700) == 0) return okStatus();
  if (errno != EEXIST) return Error::sys(fmt::format("cannot create {}", path));
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return Error::sys(fmt::format("cannot stat {}", path));
  if (!S_ISDIR(st.st_mode)) return Error(fmt::format("{} is not a directory", path));
  return okStatus();
}

// The names in dir that are ours to load: "<something>.json", not hidden.
// Temporary files a killed writer left behind (".<name>.tmp.<random>") are
// removed on the way.
Result<std::vector<std::string>> listJson(const std::string& dir) {
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return Error::sys(fmt::format("cannot read {}", dir));
  std::vector<std::string> out;
  while (dirent* e = ::readdir(d)) {
    std::string_view name(e->d_name);
    if (name.empty() || name[0] == '.') {
      if (name.find(".tmp.") != std::string_view::npos) ::unlink((dir + "/" + std::string(name)).c_str());
      continue;
    }
    if (name.size() > 5 && name.ends_with(".json")) out.emplace_back(name);
  }
  ::closedir(d);
  return out;
}

std::optional<uint32_t> version(const rapidjson::Value& v) {
  auto it = v.FindMember("version");
  if (it == v.MemberEnd() || !it->value.IsUint() || it->value.GetUint() == 0) return std::nullopt;
  return it->value.GetUint();
}

std::optional<std::string> string(const rapidjson::Value& v, const char* name, size_t max) {
  auto it = v.FindMember(name);
  if (it == v.MemberEnd() || !it->value.IsString() || it->value.GetStringLength() > max) return std::nullopt;
  return std::string(it->value.GetString(), it->value.GetStringLength());
}

bool boolean(const rapidjson::Value& v, const char* name) {
  auto it = v.FindMember(name);
  return it != v.MemberEnd() && it->value.IsBool() && it->value.GetBool();
}

std::optional<std::string> timestamp(const rapidjson::Value& v) {
  auto s = string(v, "updated_at", 64);
  if (!s || !parseRfc3339(*s)) return std::nullopt;
  return s;
}

void skipped(const std::string& path, std::string_view why) {
  log::warning("state cache: ignoring a file", {{"path", path}, {"reason", why}});
}

std::string dataFile(std::string_view key, const DataEntry& e) {
  std::string out;
  out.reserve(64 + key.size() + e.value.size() + e.value.size() / 8);
  JsonOut j(out);
  j.beginObject();
  j.key("key").str(key);
  j.key("value").str(e.value);
  j.key("version").num(e.version);
  j.key("updated_at").str(e.updatedAt);
  j.endObject();
  out.push_back('\n');
  return out;
}

}  // namespace

std::string keyFileName(std::string_view key) {
  bool plain = !key.empty() && key.size() <= 200 && alnum(key[0]);
  for (size_t i = 0; plain && i < key.size(); ++i) plain = plainChar(key[i]);
  if (plain) return std::string(key) + ".json";
  // Not a plain name ('/', "..", spaces, non-ASCII, too long): the hash. '%'
  // cannot start a plain name, so the two kinds never collide.
  auto digest = crypto::sha256(key);
  return "%" + hexEncode(std::span<const uint8_t>(digest.data(), digest.size())) + ".json";
}

Result<std::unique_ptr<StateCache>> StateCache::open(const std::string& dir, Clock& clock) {
  std::unique_ptr<StateCache> c(new StateCache(dir, clock));
  if (auto st = c->load(); !st) return st.takeError();
  return c;
}

std::string StateCache::path(std::string_view sub, std::string_view key) const {
  return fmt::format("{}/{}/{}", dir_, sub, keyFileName(key));
}

Status StateCache::load() {
  for (const std::string& d : {dir_, dir_ + "/data", dir_ + "/report"}) {
    if (auto st = ensureDir(d); !st) return st;
  }
  // Temporary files in the top directory (metadata.json, secrets.json).
  if (auto top = listJson(dir_); !top) return top.takeError();
  loadMetadata();
  if (auto st = loadData(); !st) return st;
  if (auto st = loadReports(); !st) return st;
  loadSecrets();
  log::info("state cache loaded", {{"dir", dir_},
                                   {"metadata", metadata_.size()},
                                   {"data", data_.size()},
                                   {"reports", reports_.size()},
                                   {"unsynced_reports", unsyncedReports()},
                                   {"secrets", secrets_.size()}});
  return okStatus();
}

void StateCache::loadMetadata() {
  const std::string p = dir_ + "/metadata.json";
  if (::access(p.c_str(), F_OK) == 0) {
    auto text = readFileBounded(p, kMaxMetadataFile);
    if (!text) return skipped(p, text.error().text());
    auto doc = json::parse(*text, json::Limits{kMaxMetadataFile, 4});
    if (!doc || !doc->IsObject()) return skipped(p, "not a JSON object");
    KeyMap<std::string> m;
    const rapidjson::Value& root = *doc;
    for (auto it = root.MemberBegin(); it != root.MemberEnd(); ++it) {
      if (!it->value.IsString() || it->name.GetStringLength() == 0 ||
          it->name.GetStringLength() > ipc::kMaxStateKeyLen || it->value.GetStringLength() > ipc::kMaxStateValueLen ||
          m.size() >= ipc::kMaxStateEntries)
        return skipped(p, "a metadata entry is out of bounds");
      m.insert_or_assign(std::string(it->name.GetString(), it->name.GetStringLength()),
                         std::string(it->value.GetString(), it->value.GetStringLength()));
    }
    metadata_ = std::move(m);
  }
  // Written last on every change: without it (or unreadable) the digest is
  // unknown and ctld sends the whole state again.
  const std::string n = dir_ + "/node_state.json";
  if (::access(n.c_str(), F_OK) != 0) return;
  auto text = readFileBounded(n, 4096);
  if (!text) return skipped(n, text.error().text());
  auto doc = json::parse(*text, json::Limits{4096, 2});
  if (!doc || !doc->IsObject()) return skipped(n, "not a JSON object");
  auto digest = string(*doc, "digest", 64);
  if (!digest) return skipped(n, "digest missing");
  digest_ = std::move(*digest);
  present_ = boolean(*doc, "present");
}

Status StateCache::loadData() {
  const std::string dir = dir_ + "/data";
  auto names = listJson(dir);
  if (!names) return names.takeError();
  for (const std::string& name : *names) {
    const std::string p = dir + "/" + name;
    if (data_.size() >= ipc::kMaxStateEntries) {
      skipped(p, "too many data entries");
      break;
    }
    auto text = readFileBounded(p, kMaxDataFile);
    if (!text) {
      skipped(p, text.error().text());
      continue;
    }
    auto doc = json::parse(*text, json::Limits{kMaxDataFile, 4});
    if (!doc || !doc->IsObject()) {
      skipped(p, "not a JSON object");
      continue;
    }
    auto key = string(*doc, "key", ipc::kMaxStateKeyLen);
    auto value = string(*doc, "value", ipc::kMaxStateValueLen);
    auto v = version(*doc);
    auto at = timestamp(*doc);
    if (!key || key->empty() || !value || !v || !at) {
      skipped(p, "key, value, version or updated_at missing or invalid");
      continue;
    }
    if (keyFileName(*key) != name) {
      skipped(p, "the file name does not belong to the key inside");
      continue;
    }
    data_.insert_or_assign(std::move(*key), DataEntry{std::move(*value), *v, std::move(*at)});
  }
  return okStatus();
}

Status StateCache::loadReports() {
  const std::string dir = dir_ + "/report";
  auto names = listJson(dir);
  if (!names) return names.takeError();
  for (const std::string& name : *names) {
    const std::string p = dir + "/" + name;
    if (reports_.size() >= kMaxReports) {
      skipped(p, "too many reports");
      break;
    }
    auto text = readFileBounded(p, kMaxReportFile);
    if (!text) {
      skipped(p, text.error().text());
      continue;
    }
    auto doc = json::parse(*text, json::Limits{kMaxReportFile, kMaxJsonDepth + 2});
    if (!doc || !doc->IsObject()) {
      skipped(p, "not a JSON object");
      continue;
    }
    auto key = string(*doc, "key", ipc::kMaxReportKeyLen);
    auto v = version(*doc);
    if (!key || !ipc::validReportKey(*key) || !v || keyFileName(*key) != name) {
      skipped(p, "key or version missing or invalid");
      continue;
    }
    ReportEntry e;
    e.version = *v;
    e.synced = boolean(*doc, "synced");
    e.deleted = boolean(*doc, "deleted");
    if (!e.deleted) {
      auto ct = string(*doc, "content_type", kMaxContentType);
      auto payload = compactMember(*text, *doc, "payload");
      auto at = timestamp(*doc);
      if (!ct || !payload || payload->size() > kMaxReportPayload || !at) {
        skipped(p, "content_type, payload or updated_at missing or invalid");
        continue;
      }
      e.contentType = std::move(*ct);
      e.payload = std::move(*payload);
      e.updatedAt = std::move(*at);
    }
    e.change = ++changes_;
    reports_.insert_or_assign(std::move(*key), std::move(e));
  }
  return okStatus();
}

void StateCache::loadSecrets() {
  const std::string p = dir_ + "/secrets.json";
  if (::access(p.c_str(), F_OK) != 0) return;
  auto text = readFileBounded(p, kMaxSecretsFile);
  if (!text) return skipped(p, text.error().text());
  auto doc = json::parse(*text, json::Limits{kMaxSecretsFile, 4});
  if (!doc || !doc->IsObject()) return skipped(p, "not a JSON object");
  const rapidjson::Value& root = *doc;
  auto list = root.FindMember("secrets");
  if (list == root.MemberEnd() || !list->value.IsArray()) return skipped(p, "secrets missing");
  for (const auto& s : list->value.GetArray()) {
    if (secrets_.size() >= kMaxSecretIndex) break;
    if (!s.IsObject()) continue;
    auto key = string(s, "key", ipc::kMaxSecretNameLen);
    auto v = version(s);
    if (key && ipc::validSecretName(*key) && v) secrets_.insert_or_assign(std::move(*key), *v);
  }
}

Status StateCache::applyNodeState(bool present, const std::string& digest, std::vector<ipc::NodeStateEntry>&& entries) {
  KeyMap<std::string> meta;
  KeyMap<DataEntry> data;
  std::vector<std::string_view> changed;
  std::string now;
  for (auto& e : entries) {
    // What is cached must read back the same (JSON files are UTF-8).
    if (!validUtf8(e.key) || !validUtf8(e.value)) return Error("a node state entry is not valid UTF-8");
    if (e.bucket == ipc::StateBucket::metadata) {
      if (!meta.emplace(std::move(e.key), std::move(e.value)).second) return Error("duplicate metadata key");
      continue;
    }
    auto old = data_.find(e.key);
    DataEntry d;
    const bool same = old != data_.end() && old->second.value == e.value;
    if (same) {
      d = old->second;
    } else {
      if (now.empty()) now = formatRfc3339Millis(clock_.wallNow());
      d.version = old == data_.end() ? 1 : (old->second.version == std::numeric_limits<uint32_t>::max()
                                                ? old->second.version
                                                : old->second.version + 1);
      d.updatedAt = now;
      d.value = std::move(e.value);
    }
    auto [it, fresh] = data.emplace(std::move(e.key), std::move(d));
    if (!fresh) return Error("duplicate data key");
    if (!same) changed.push_back(it->first);
  }
  // Disk first: changed data files, removed ones, metadata.json, and the
  // digest (node_state.json) last, so a crash in between leaves an old
  // digest and ctld sends the state again (unchanged values keep their
  // versions).
  for (std::string_view key : changed) {
    const DataEntry& d = data.find(key)->second;
    if (auto st = writeFileAtomic(path("data", key), dataFile(key, d), kFileMode); !st) return st;
  }
  for (const auto& [key, d] : data_) {
    if (data.count(key) != 0) continue;
    const std::string p = path("data", key);
    if (::unlink(p.c_str()) != 0 && errno != ENOENT) return Error::sys(fmt::format("cannot remove {}", p));
  }
  std::string file;
  {
    JsonOut j(file);
    j.beginObject();
    for (const auto& [k, v] : meta) j.key(k).str(v);
    j.endObject();
    file.push_back('\n');
  }
  if (file.size() > kMaxMetadataFile)
    return Error(fmt::format("metadata of {} bytes exceeds the cache limit of {} bytes", file.size(), kMaxMetadataFile));
  if (auto st = writeFileAtomic(dir_ + "/metadata.json", file, kFileMode); !st) return st;
  std::string node;
  {
    JsonOut j(node);
    j.beginObject();
    j.key("digest").str(digest);
    j.key("present").boolean(present);
    j.endObject();
    node.push_back('\n');
  }
  if (auto st = writeFileAtomic(dir_ + "/node_state.json", node, kFileMode); !st) return st;
  metadata_ = std::move(meta);
  data_ = std::move(data);
  digest_ = digest;
  present_ = present;
  return okStatus();
}

const ReportEntry* StateCache::report(std::string_view key) const {
  auto it = reports_.find(key);
  return it == reports_.end() || it->second.deleted ? nullptr : &it->second;
}

bool StateCache::reportRoom(std::string_view key) const {
  return reports_.find(key) != reports_.end() || reports_.size() < kMaxReports;
}

Status StateCache::writeReport(std::string_view key, const ReportEntry& e) {
  std::string out;
  out.reserve(128 + key.size() + e.contentType.size() + e.payload.size());
  JsonOut j(out);
  j.beginObject();
  j.key("key").str(key);
  if (e.deleted) {
    j.key("deleted").boolean(true);
  } else {
    j.key("content_type").str(e.contentType);
    j.key("payload").raw(e.payload);
    j.key("updated_at").str(e.updatedAt);
  }
  j.key("version").num(e.version);
  j.key("synced").boolean(e.synced);
  j.endObject();
  out.push_back('\n');
  return writeFileAtomic(path("report", key), out, kFileMode);
}

Result<const ReportEntry*> StateCache::putReport(std::string_view key, std::string contentType, std::string payload) {
  if (!reportRoom(key)) return Error(fmt::format("too many report keys (at most {})", kMaxReports));
  const ReportEntry* live = report(key);
  ReportEntry e;
  e.contentType = std::move(contentType);
  e.payload = std::move(payload);
  e.version = live == nullptr ? 1 : (live->version == std::numeric_limits<uint32_t>::max() ? 1 : live->version + 1);
  e.updatedAt = formatRfc3339Millis(clock_.wallNow());
  e.change = ++changes_;
  if (auto st = writeReport(key, e); !st) return st.takeError();
  auto it = reports_.find(key);
  if (it == reports_.end()) it = reports_.emplace(std::string(key), ReportEntry{}).first;
  it->second = std::move(e);
  return &it->second;
}

Status StateCache::deleteReport(std::string_view key) {
  auto it = reports_.find(key);
  if (it == reports_.end() || it->second.deleted) return Error("no such report");
  ReportEntry e;
  e.deleted = true;
  e.version = it->second.version;
  e.change = ++changes_;
  if (auto st = writeReport(key, e); !st) return st;
  it->second = std::move(e);
  return okStatus();
}

Status StateCache::markSynced(std::string_view key, uint64_t change) {
  auto it = reports_.find(key);
  if (it == reports_.end() || it->second.change != change || it->second.synced) return okStatus();
  if (it->second.deleted) {
    const std::string p = path("report", key);
    if (::unlink(p.c_str()) != 0 && errno != ENOENT) return Error::sys(fmt::format("cannot remove {}", p));
    reports_.erase(it);
    return okStatus();
  }
  ReportEntry e = it->second;
  e.synced = true;
  if (auto st = writeReport(key, e); !st) return st;
  it->second.synced = true;
  return okStatus();
}

size_t StateCache::unsyncedReports() const {
  size_t n = 0;
  for (const auto& [k, e] : reports_) n += e.synced ? 0 : 1;
  return n;
}

Status StateCache::recordSecret(std::string_view name, uint32_t version) {
  auto it = secrets_.find(name);
  if (it != secrets_.end() && it->second == version) return okStatus();
  if (it == secrets_.end() && secrets_.size() >= kMaxSecretIndex) {
    if (!secretsFullLogged_) {
      log::warning("secret index full: further names are served but not listed", {{"max", kMaxSecretIndex}});
      secretsFullLogged_ = true;
    }
    return okStatus();
  }
  KeyMap<uint32_t> next = secrets_;
  next.insert_or_assign(std::string(name), version);
  std::string out;
  JsonOut j(out);
  j.beginObject();
  j.key("secrets").beginArray();
  for (const auto& [k, v] : next) {
    j.beginObject();
    j.key("key").str(k);
    j.key("version").num(v);
    j.endObject();
  }
  j.endArray();
  j.endObject();
  out.push_back('\n');
  if (auto st = writeFileAtomic(dir_ + "/secrets.json", out, kFileMode); !st) return st;
  secrets_ = std::move(next);
  return okStatus();
}

}  // namespace plexd::apid
