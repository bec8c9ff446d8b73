#include "bench/naive_snapshot.h"

#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

namespace plexd::bench {

namespace {

std::string text(const rapidjson::Value& v) {
  rapidjson::StringBuffer sb;
  rapidjson::Writer<rapidjson::StringBuffer> w(sb);
  v.Accept(w);
  return std::string(sb.GetString(), sb.GetSize());
}

std::string member(const rapidjson::Value& obj, const char* key) {
  auto it = obj.FindMember(key);
  return it == obj.MemberEnd() ? "null" : text(it->value);
}

std::optional<std::string> str(const rapidjson::Value& obj, const char* key) {
  auto it = obj.FindMember(key);
  if (it == obj.MemberEnd() || !it->value.IsString()) return std::nullopt;
  return std::string(it->value.GetString(), it->value.GetStringLength());
}

}  // namespace

std::optional<NaiveSnapshot> naiveParse(std::string_view body) {
  rapidjson::Document doc;
  doc.Parse(body.data(), body.size());
  if (doc.HasParseError() || !doc.IsObject()) return std::nullopt;
  const rapidjson::Value& root = doc;  // const iterators (clang: ambiguous reversed ==)
  NaiveSnapshot s;
  auto peers = root.FindMember("peers");
  if (peers == root.MemberEnd() || !peers->value.IsArray()) return std::nullopt;
  for (const auto& p : peers->value.GetArray()) {
    if (!p.IsObject()) return std::nullopt;
    auto id = str(p, "node_id");
    auto ip = str(p, "mesh_ip");
    auto key = str(p, "public_key");
    if (!id || !ip || !key) return std::nullopt;
    s.peers[*id] = NaivePeer{*ip, *key, str(p, "fallback_endpoint")};
  }
  if (auto policy = root.FindMember("policy"); policy != root.MemberEnd() && policy->value.IsObject())
    s.policyFingerprint = str(policy->value, "fingerprint");
  s.bridge = member(root, "bridge");
  s.state = member(root, "state");
  s.reports = member(root, "reports");
  return s;
}

NaiveDiff naiveDiff(const NaiveSnapshot* before, const NaiveSnapshot& after) {
  NaiveDiff d;
  if (before == nullptr) {
    d.added = after.peers.size();
    d.policyChanged = d.bridgeChanged = d.stateChanged = d.reportsChanged = true;
    return d;
  }
  for (const auto& [id, peer] : after.peers) {
    auto it = before->peers.find(id);
    if (it == before->peers.end())
      ++d.added;
    else if (!(it->second == peer))
      ++d.updated;
  }
  for (const auto& [id, peer] : before->peers) {
    if (!after.peers.contains(id)) ++d.removed;
  }
  d.policyChanged = before->policyFingerprint != after.policyFingerprint;
  d.bridgeChanged = before->bridge != after.bridge;
  d.stateChanged = before->state != after.state;
  d.reportsChanged = before->reports != after.reports;
  return d;
}

}  // namespace plexd::bench
