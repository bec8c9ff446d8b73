#include "plexd-ctld/cp/identity.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstdio>
#include <algorithm>
#include <cstdint>
#include <tuple>

#include "common/atomic_file.h"
#include "common/json.h"
#include "plexd-ctld/cp/bearer.h"

namespace plexd::ctld {
namespace {

constexpr size_t kMaxFile = 64 * 1024;

std::string trimmed(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ')) s.pop_back();
  return s;
}

bool exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

std::optional<RotationReceipt> receiptOf(const rapidjson::Value& root) {
  if (!root.HasMember("last_rotation") || !root["last_rotation"].IsObject()) return std::nullopt;
  const auto& r = root["last_rotation"];
  auto id = json::getString(r, "last_rotation", "rotation_id", 64);
  auto kid = json::getString(r, "last_rotation", "kid");
  auto version = json::getInt(r, "last_rotation", "wrap_key_version", 0, INT64_MAX);
  auto at = json::getOptionalString(r, "last_rotation", "rotated_at", 64);
  if (!id || !kid || !version || !at) return std::nullopt;
  return RotationReceipt{*id, *kid, *version, at->value_or("")};
}

rapidjson::Value receiptValue(const RotationReceipt& r, rapidjson::Document::AllocatorType& a) {
  auto str = [&](const std::string& s) { return rapidjson::Value(s.c_str(), static_cast<rapidjson::SizeType>(s.size()), a); };
  rapidjson::Value v(rapidjson::kObjectType);
  v.AddMember("rotation_id", str(r.rotationId), a);
  v.AddMember("kid", str(r.kid), a);
  v.AddMember("wrap_key_version", rapidjson::Value(static_cast<int64_t>(r.wrapKeyVersion)), a);
  if (!r.rotatedAt.empty()) v.AddMember("rotated_at", str(r.rotatedAt), a);
  return v;
}

}  // namespace

Status validateIdentity(const Identity& id) {
  if (!isCanonicalUuid(id.nodeId)) return Error("node_id is not a canonical UUID");
  if (id.meshIp.empty()) return Error("mesh_ip is empty");
  if (id.nsk.size() != 32) return Error("node secret key does not decode to 32 bytes");
  return {};
}

Result<LoadedIdentity> IdentityStore::load() const {
  const std::string jsonPath = dir_ + "/identity.json";
  if (!exists(jsonPath)) return LoadedIdentity{};
  auto text = readFileBounded(jsonPath, kMaxFile);
  if (!text) return text.takeError();
  auto doc = json::parse(*text);
  if (!doc) return LoadedIdentity{std::nullopt, "identity.json: " + doc.error().text()};
  Identity id;
  const auto& root = *doc;
  struct Field {
    const char* key;
    std::string* value;
    bool required;  // legacy files lack signing_key_id / domain_mesh_cidr
  };
  for (const Field& f : {Field{"node_id", &id.nodeId, true}, Field{"mesh_ip", &id.meshIp, true},
                         Field{"signing_public_key", &id.signingPublicKey, false},
                         Field{"signing_key_id", &id.signingKeyId, false},
                         Field{"domain_mesh_cidr", &id.domainMeshCidr, false}}) {
    auto v = json::getOptionalString(root, "identity.json", f.key);
    if (!v) return LoadedIdentity{std::nullopt, v.error().text()};
    if (v->has_value()) {
      *f.value = **v;
    } else if (f.required) {
      return LoadedIdentity{std::nullopt, std::string("identity.json: ") + f.key + " missing"};
    }
  }
  if (root.HasMember("previous_signing_key_until")) {
    auto until = json::getInt(root, "identity.json", "previous_signing_key_until", 0, int64_t{253402300799});
    auto key = json::getOptionalString(root, "identity.json", "previous_signing_public_key");
    auto kid = json::getOptionalString(root, "identity.json", "previous_signing_key_id");
    // A damaged grace entry only loses the grace; the identity stays usable.
    if (until && key && kid && key->has_value()) {
      id.previousSigningKeyUntil = *until;
      id.previousSigningPublicKey = **key;
      id.previousSigningKeyId = kid->value_or("");
    }
  }
  id.lastRotation = receiptOf(root);
  auto nskText = readFileBounded(dir_ + "/node_secret_key", 4096);
  if (!nskText) return LoadedIdentity{std::nullopt, nskText.error().text()};
  std::string nskTrimmed = trimmed(std::move(nskText).value());
  auto nsk = SecretBytes::fromBase64(nskTrimmed);
  id.nskText = SecretString(nskTrimmed);
  std::fill(nskTrimmed.begin(), nskTrimmed.end(), '\0');
  if (!nsk) return LoadedIdentity{std::nullopt, "node_secret_key: not valid base64"};
  id.nsk = std::move(nsk).value();
  // The separate signing key file wins over identity.json (reference agent behaviour).
  if (auto key = readFileBounded(dir_ + "/signing_public_key", 4096); key.ok()) {
    std::string k = trimmed(std::move(key).value());
    if (!k.empty()) id.signingPublicKey = k;
  }
  if (auto st = validateIdentity(id); !st) return LoadedIdentity{std::nullopt, st.error().text()};
  return LoadedIdentity{std::move(id), {}};
}

Status IdentityStore::save(const Identity& id) const {
  if (auto st = validateIdentity(id); !st) return st.takeError().wrap("refusing to save identity");
  if (::mkdir(dir_.c_str(), 0700) != 0 && errno != EEXIST) return Error::sys("cannot create " + dir_);
  if (auto st = writeFileAtomic(dir_ + "/node_secret_key", id.nskText.view(), 0600); !st) return st;
  if (auto st = writeFileAtomic(dir_ + "/signing_public_key", id.signingPublicKey, 0600); !st) return st;
  rapidjson::Document d;
  d.SetObject();
  auto& a = d.GetAllocator();
  auto str = [&](const std::string& s) { return rapidjson::Value(s.c_str(), static_cast<rapidjson::SizeType>(s.size()), a); };
  d.AddMember("node_id", str(id.nodeId), a);
  d.AddMember("mesh_ip", str(id.meshIp), a);
  d.AddMember("signing_public_key", str(id.signingPublicKey), a);
  d.AddMember("signing_key_id", str(id.signingKeyId), a);
  d.AddMember("domain_mesh_cidr", str(id.domainMeshCidr), a);
  if (id.previousSigningKeyUntil > 0 && !id.previousSigningPublicKey.empty()) {
    d.AddMember("previous_signing_public_key", str(id.previousSigningPublicKey), a);
    d.AddMember("previous_signing_key_id", str(id.previousSigningKeyId), a);
    d.AddMember("previous_signing_key_until", rapidjson::Value(static_cast<int64_t>(id.previousSigningKeyUntil)), a);
  }
  if (id.lastRotation) d.AddMember("last_rotation", receiptValue(*id.lastRotation, a), a);
  // Keep what a newer version (or recordRotation) wrote that we do not own.
  static constexpr std::string_view kOwned[] = {"previous_signing_public_key", "previous_signing_key_id",
                                                "previous_signing_key_until"};
  if (auto old = readFileBounded(dir_ + "/identity.json", kMaxFile); old.ok()) {
    auto prev = json::parse(*old);
    if (prev && prev->IsObject() && prev->HasMember("node_id") && (*prev)["node_id"].IsString() &&
        id.nodeId == (*prev)["node_id"].GetString()) {
      // Const iterators: clang warns that rapidjson's non-const MemberIterator
      // comparison is ambiguous under C++20's reversed operators.
      const rapidjson::Value& pv = *prev;
      for (auto it = pv.MemberBegin(); it != pv.MemberEnd(); ++it) {
        std::string_view name(it->name.GetString(), it->name.GetStringLength());
        if (d.HasMember(it->name) || std::find(std::begin(kOwned), std::end(kOwned), name) != std::end(kOwned))
          continue;
        d.AddMember(rapidjson::Value(it->name, a), rapidjson::Value(it->value, a), a);
      }
    }
  }
  return writeFileAtomic(dir_ + "/identity.json", json::write(d) + "\n", 0600);
}

Status IdentityStore::recordRotation(const RotationReceipt& receipt) const {
  const std::string path = dir_ + "/identity.json";
  auto text = readFileBounded(path, kMaxFile);
  if (!text) return text.takeError().wrap("cannot record the key rotation receipt");
  auto doc = json::parse(*text);
  if (!doc || !doc->IsObject()) return Error(path + " is not a JSON object; cannot record the key rotation receipt");
  auto& a = doc->GetAllocator();
  doc->RemoveMember("last_rotation");
  doc->AddMember("last_rotation", receiptValue(receipt, a), a);
  return writeFileAtomic(path, json::write(*doc) + "\n", 0600);
}

Status IdentityStore::moveAside() const {
  for (const char* name : {"identity.json", "node_secret_key", "signing_public_key"}) {
    std::string from = dir_ + "/" + name;
    if (!exists(from)) continue;
    if (std::rename(from.c_str(), (from + ".old").c_str()) != 0) return Error::sys("cannot move aside " + from);
  }
  return {};
}

}  // namespace plexd::ctld
