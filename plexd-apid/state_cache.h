// apid's state cache: what the node API serves without asking anyone.
//
// Layout under the state directory (config state_dirs.apid, 0700, every file
// 0600 and replaced atomically, common/atomic_file.h):
//   metadata.json        {k: v}
//   node_state.json      {"digest", "present"}  written last: which node state this is
//   data/<file>.json     {"key", "value", "version", "updated_at"}
//   report/<file>.json   {"key", "content_type", "payload", "version", "updated_at", "synced"}
//                        or a deletion not yet acked by ctld: {"key", "deleted": true, "version", "synced": false}
//   secrets.json         {"secrets": [{"key", "version"}]}  names and versions only, never values
// <file> is keyFileName(key): the key itself when it is a plain name, else a
// hash, so no key (data keys come from the control plane) can leave its
// directory or collide with another. The key inside the file is authoritative.
//
// Everything is loaded into memory by open() and served from there; writes go
// to disk first and change memory only once the disk accepted them. A file
// that cannot be parsed is skipped with a warning (ctld sends the node state
// again: the digest on disk no longer matches).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/clock.h"
#include "common/result.h"
#include "ipc/ctld_apid.h"

namespace plexd::apid {

inline constexpr std::string_view kDataContentType = "text/plain; charset=utf-8";
inline constexpr size_t kMaxReports = 1024;       // report keys kept (live + deletions not yet acked)
inline constexpr size_t kMaxSecretIndex = 4096;   // names in secrets.json
inline constexpr size_t kMaxMetadataFile = 64u << 20;

struct DataEntry {
  std::string value;
  uint32_t version = 0;
  std::string updatedAt;  // RFC 3339, when apid first saw this value
};

struct ReportEntry {
  std::string contentType;
  std::string payload;  // compact JSON text
  uint32_t version = 0;
  std::string updatedAt;
  bool deleted = false;  // deleted locally; kept until ctld acked the deletion
  bool synced = false;   // ctld acked this exact change (persisted)
  uint64_t change = 0;   // sequence of the latest change (memory only)
};

template <class V>
using KeyMap = std::map<std::string, V, std::less<>>;

// The file name of a key inside data/ or report/.
std::string keyFileName(std::string_view key);

class StateCache {
 public:
  // Creates dir (0700) and its data/ and report/ subdirectories if missing
  // and loads every file. Fails only if the directory cannot be created or
  // read.
  static Result<std::unique_ptr<StateCache>> open(const std::string& dir, Clock& clock);

  const std::string& dir() const { return dir_; }
  // Identifies the node state on disk ("" = none yet), and whether the
  // control plane sent a state block at all.
  const std::string& digest() const { return digest_; }
  bool present() const { return present_; }
  const KeyMap<std::string>& metadata() const { return metadata_; }
  const KeyMap<DataEntry>& data() const { return data_; }
  // Live reports and unacked deletions (deleted = true): filter on deleted.
  const KeyMap<ReportEntry>& reports() const { return reports_; }
  const KeyMap<uint32_t>& secrets() const { return secrets_; }

  // Replaces metadata and data with the node state ctld pushed. Data entries
  // keep version and updated_at while their value is unchanged, go to
  // version + 1 when it changed and start at 1 when new. Fails (memory
  // unchanged) on a duplicate key, a key or value that is not valid UTF-8,
  // or a disk error.
  Status applyNodeState(bool present, const std::string& digest, std::vector<ipc::NodeStateEntry>&& entries);

  // The live report or nullptr.
  const ReportEntry* report(std::string_view key) const;
  // Whether a new key still fits (kMaxReports).
  bool reportRoom(std::string_view key) const;
  // Creates or replaces a report: version 1 or + 1, unsynced.
  Result<const ReportEntry*> putReport(std::string_view key, std::string contentType, std::string payload);
  // Deletes a live report: kept as an unsynced deletion until markSynced().
  Status deleteReport(std::string_view key);
  // ctld acked `change` of key: remember it (or forget a deletion). A stale
  // change (the key changed again meanwhile) is ignored.
  Status markSynced(std::string_view key, uint64_t change);
  // Changes ctld has not acked yet.
  size_t unsyncedReports() const;

  // A secret was served: remember its name and version (at most
  // kMaxSecretIndex names).
  Status recordSecret(std::string_view name, uint32_t version);

 private:
  StateCache(std::string dir, Clock& clock) : dir_(std::move(dir)), clock_(clock) {}
  Status load();
  void loadMetadata();
  Status loadData();
  Status loadReports();
  void loadSecrets();
  Status writeReport(std::string_view key, const ReportEntry& e);
  std::string path(std::string_view sub, std::string_view key) const;

  std::string dir_;
  Clock& clock_;
  std::string digest_;
  bool present_ = false;
  KeyMap<std::string> metadata_;
  KeyMap<DataEntry> data_;
  KeyMap<ReportEntry> reports_;
  KeyMap<uint32_t> secrets_;
  uint64_t changes_ = 0;
  bool secretsFullLogged_ = false;
};

}  // namespace plexd::apid
