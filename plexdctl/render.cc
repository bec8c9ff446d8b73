#include "plexdctl/render.h"

#include <rapidjson/prettywriter.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>

#include "common/json.h"
#include "common/time_format.h"

namespace plexd::ctl {

namespace {

// \x1b for a byte, \u009b for a code point.
void appendEscape(std::string& out, bool codePoint, uint32_t value) {
  char buf[16];
  int n =
      codePoint ? std::snprintf(buf, sizeof buf, "\\u%04x", value) : std::snprintf(buf, sizeof buf, "\\x%02x", value);
  if (n > 0) out.append(buf, static_cast<size_t>(n));
}

// Code points that are printable in principle but reorder or break what a
// terminal shows (Trojan Source): bidi marks, embeddings, overrides,
// isolates, and the Unicode line/paragraph separators.
bool isDeceptive(uint32_t cp) {
  return cp == 0x061C || cp == 0x200E || cp == 0x200F || (cp >= 0x202A && cp <= 0x202E) ||
         (cp >= 0x2066 && cp <= 0x2069) || cp == 0x2028 || cp == 0x2029;
}

// The length of the valid UTF-8 sequence at s[i] and its code point; 0 when
// the bytes there are not UTF-8 (bad lead, truncated, overlong, surrogate).
size_t decodeUtf8(std::string_view s, size_t i, uint32_t& cp) {
  auto c = static_cast<unsigned char>(s[i]);
  size_t len = 0;
  uint32_t min = 0;
  if ((c & 0xE0) == 0xC0) {
    len = 2, cp = c & 0x1Fu, min = 0x80;
  } else if ((c & 0xF0) == 0xE0) {
    len = 3, cp = c & 0x0Fu, min = 0x800;
  } else if ((c & 0xF8) == 0xF0) {
    len = 4, cp = c & 0x07u, min = 0x10000;
  } else {
    return 0;
  }
  if (i + len > s.size()) return 0;
  for (size_t k = 1; k < len; ++k) {
    auto b = static_cast<unsigned char>(s[i + k]);
    if ((b & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (b & 0x3Fu);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
  return len;
}

std::string two(int64_t v) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "%02" PRId64, v);
  return buf;
}

std::string strMember(const rapidjson::Value& v, const char* key) {
  const rapidjson::Value* m = member(v, key);
  if (m == nullptr || !m->IsString()) return "";
  return sanitize(std::string_view(m->GetString(), m->GetStringLength()));
}

std::string bytesMember(const rapidjson::Value& v, const char* key) {
  auto n = unsignedMember(v, key);
  return n ? formatBytes(*n) : text(member(v, key));
}

// A section: "name:" and its key: value lines indented below.
void section(std::string& out, std::string_view name, const KeyValues& kv) {
  if (kv.empty()) return;
  out += name;
  out += ":\n";
  out += kv.render("  ");
}

}  // namespace

std::string sanitize(std::string_view s, bool keepNewlines) {
  std::string out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      if (keepNewlines && (c == '\n' || c == '\t')) {
        out += static_cast<char>(c);
      } else if (c == '\n') {
        out += "\\n";
      } else if (c == '\r') {
        out += "\\r";
      } else if (c == '\t') {
        out += "\\t";
      } else if (c < 0x20 || c == 0x7f) {
        appendEscape(out, false, c);
      } else {
        out += static_cast<char>(c);
      }
      ++i;
      continue;
    }
    uint32_t cp = 0;
    size_t len = decodeUtf8(s, i, cp);
    if (len == 0) {
      appendEscape(out, false, c);
      ++i;
      continue;
    }
    if ((cp >= 0x80 && cp <= 0x9F) || isDeceptive(cp)) {
      appendEscape(out, true, cp);
    } else {
      out.append(s.substr(i, len));
    }
    i += len;
  }
  return out;
}

size_t displayWidth(std::string_view s) {
  return static_cast<size_t>(
      std::count_if(s.begin(), s.end(), [](char ch) { return (static_cast<unsigned char>(ch) & 0xC0) != 0x80; }));
}

std::string formatBytes(uint64_t bytes) {
  if (bytes < 1024) return std::to_string(bytes) + " B";
  static constexpr const char* kUnits[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  auto v = static_cast<double>(bytes) / 1024.0;
  size_t unit = 0;
  // Switch units before rounding would print "1024.0".
  while (v >= 1023.95 && unit + 1 < std::size(kUnits)) {
    v /= 1024.0;
    ++unit;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f %s", v, kUnits[unit]);
  return buf;
}

std::string formatAge(std::chrono::seconds age) {
  int64_t s = std::max<int64_t>(0, age.count());
  if (s < 60) return std::to_string(s) + "s ago";
  if (s < 3600) return std::to_string(s / 60) + "m" + two(s % 60) + "s ago";
  if (s < 86400) return std::to_string(s / 3600) + "h" + two(s % 3600 / 60) + "m ago";
  return std::to_string(s / 86400) + "d" + two(s % 86400 / 3600) + "h ago";
}

std::string formatTime(const rapidjson::Value* v, WallTime now) {
  if (v == nullptr || v->IsNull() || (v->IsString() && v->GetStringLength() == 0)) return "never";
  if (!v->IsString()) return text(v);
  std::string_view raw(v->GetString(), v->GetStringLength());
  auto parsed = parseRfc3339(raw);
  if (!parsed) return sanitize(raw);
  auto wall = parsed->toWallTime();
  if (!wall) return sanitize(raw);
  auto age = std::chrono::floor<std::chrono::seconds>(now - *wall);
  return sanitize(raw) + " (" + formatAge(age) + ")";
}

std::string Table::render(std::string_view indent) const {
  std::vector<size_t> widths;
  auto measure = [&widths](const std::vector<std::string>& row) {
    if (widths.size() < row.size()) widths.resize(row.size(), 0);
    for (size_t j = 0; j < row.size(); ++j) widths[j] = std::max(widths[j], displayWidth(row[j]));
  };
  if (!header_.empty()) measure(header_);
  for (const auto& r : rows_) measure(r);
  std::string out;
  auto line = [&](const std::vector<std::string>& row) {
    std::string l(indent);
    for (size_t j = 0; j < row.size(); ++j) {
      l += row[j];
      if (j + 1 < row.size()) l += std::string(widths[j] - displayWidth(row[j]) + 2, ' ');
    }
    while (!l.empty() && l.back() == ' ') l.pop_back();
    out += l;
    out += '\n';
  };
  if (!header_.empty()) line(header_);
  for (const auto& r : rows_) line(r);
  return out;
}

std::string KeyValues::render(std::string_view indent) const {
  size_t width = 0;
  for (const auto& [k, v] : items_) {
    if (v.find('\n') == std::string::npos) width = std::max(width, displayWidth(k));
  }
  std::string out;
  for (const auto& [k, v] : items_) {
    out += indent;
    out += k;
    out += ':';
    if (v.find('\n') != std::string::npos) {
      out += '\n';
      size_t start = 0;
      while (start < v.size()) {
        size_t end = v.find('\n', start);
        if (end == std::string::npos) end = v.size();
        out += indent;
        out += "  ";
        out += v.substr(start, end - start);
        out += '\n';
        start = end + 1;
      }
      continue;
    }
    if (!v.empty()) out += std::string(width - displayWidth(k) + 2, ' ') + v;
    out += '\n';
  }
  return out;
}

const rapidjson::Value* member(const rapidjson::Value& v, const char* key) {
  if (!v.IsObject()) return nullptr;
  auto it = v.FindMember(key);
  return it == v.MemberEnd() ? nullptr : &it->value;
}

std::string text(const rapidjson::Value* v, std::string_view fallback) {
  if (v == nullptr || v->IsNull()) return std::string(fallback);
  if (v->IsString()) {
    if (v->GetStringLength() == 0) return std::string(fallback);
    return sanitize(std::string_view(v->GetString(), v->GetStringLength()));
  }
  if (v->IsBool()) return v->GetBool() ? "true" : "false";
  if (v->IsUint64()) return std::to_string(v->GetUint64());
  if (v->IsInt64()) return std::to_string(v->GetInt64());
  return sanitize(json::write(*v));
}

std::optional<uint64_t> unsignedMember(const rapidjson::Value& v, const char* key) {
  const rapidjson::Value* m = member(v, key);
  if (m == nullptr || !m->IsUint64()) return std::nullopt;
  return m->GetUint64();
}

std::string errorMessage(std::string_view body) {
  auto doc = json::parse(body, {.maxBytes = 1024 * 1024, .maxDepth = 16});
  if (!doc) return "";
  return strMember(*doc, "error");
}

std::string prettyJson(const rapidjson::Value& v, bool asciiOnly) {
  rapidjson::StringBuffer sb;
  if (asciiOnly) {
    rapidjson::PrettyWriter<rapidjson::StringBuffer, rapidjson::UTF8<>, rapidjson::ASCII<>> w(sb);
    w.SetIndent(' ', 2);
    v.Accept(w);
  } else {
    rapidjson::PrettyWriter<rapidjson::StringBuffer> w(sb);
    w.SetIndent(' ', 2);
    v.Accept(w);
  }
  return std::string(sb.GetString(), sb.GetSize()) + "\n";
}

std::string renderStatus(const rapidjson::Value& s, WallTime now) {
  std::string out;
  KeyValues head;
  head.add("node", text(member(s, "node_id")));
  head.add("mesh ip", text(member(s, "mesh_ip")));
  head.add("registration", text(member(s, "registration")));
  out += head.render();

  if (const auto* cp = member(s, "control_plane"); cp != nullptr && cp->IsObject()) {
    KeyValues kv;
    kv.add("url", text(member(*cp, "url")));
    kv.add("state", text(member(*cp, "state")));
    kv.add("last contact", formatTime(member(*cp, "last_contact"), now));
    std::string pull = formatTime(member(*cp, "last_pull"), now);
    if (auto r = strMember(*cp, "last_pull_result"); !r.empty()) pull += ": " + r;
    kv.add("last pull", pull);
    std::string hb = formatTime(member(*cp, "last_heartbeat"), now);
    if (auto r = strMember(*cp, "heartbeat_result"); !r.empty()) hb += ": " + r;
    kv.add("last heartbeat", hb);
    section(out, "control plane", kv);
  }
  if (const auto* st = member(s, "stream"); st != nullptr && st->IsObject()) {
    KeyValues kv;
    kv.add("state", text(member(*st, "state")));
    kv.add("cursor", text(member(*st, "cursor")));
    section(out, "stream", kv);
  }
  if (const auto* i = member(s, "interface"); i != nullptr && i->IsObject()) {
    KeyValues kv;
    std::string name = text(member(*i, "name"));
    if (auto b = strMember(*i, "backend"); !b.empty()) name += " (" + b + ")";
    kv.add("name", name);
    kv.add("state", text(member(*i, "state")));
    std::string peers = text(member(*i, "peers"));
    if (const auto* h = member(*i, "handshaken_peers"); h != nullptr) peers += " (" + text(h) + " handshaken)";
    kv.add("peers", peers);
    kv.add("traffic", "rx " + bytesMember(*i, "rx_bytes") + ", tx " + bytesMember(*i, "tx_bytes"));
    if (auto e = strMember(*i, "error"); !e.empty()) kv.add("error", e);
    section(out, "interface", kv);
  }
  if (const auto* f = member(s, "firewall"); f != nullptr && f->IsObject()) {
    KeyValues kv;
    kv.add("state", text(member(*f, "state")));
    kv.add("revision", text(member(*f, "revision")));
    std::string rules = text(member(*f, "rules"));
    if (auto d = strMember(*f, "default"); !d.empty()) rules += " (default " + d + ")";
    kv.add("rules", rules);
    kv.add("drift repairs", text(member(*f, "drift_repairs")));
    kv.add("dropped packets", text(member(*f, "dropped_packets")));
    if (auto e = strMember(*f, "error"); !e.empty()) kv.add("error", e);
    section(out, "firewall", kv);
  }
  if (const auto* n = member(s, "nat"); n != nullptr && n->IsObject()) {
    KeyValues kv;
    kv.add("state", text(member(*n, "state")));
    if (auto e = strMember(*n, "endpoint"); !e.empty()) {
      std::string t = strMember(*n, "type");
      kv.add("endpoint", t.empty() ? e : e + " (" + t + ")");
    }
    if (auto r = strMember(*n, "report_result"); !r.empty()) kv.add("report", r);
    if (auto e = strMember(*n, "error"); !e.empty()) kv.add("error", e);
    section(out, "nat", kv);
  }
  if (const auto* r = member(s, "relay"); r != nullptr && r->IsObject()) {
    KeyValues kv;
    const std::string relays = text(member(*r, "relays"));
    if (const auto* pa = member(*r, "paths"); pa != nullptr && pa->IsObject()) {
      const std::string d = text(member(*pa, "direct")), rl = text(member(*pa, "relayed")),
                        t = text(member(*pa, "trying_direct"));
      if (d != "0" || rl != "0" || t != "0")
        kv.add("paths", d + " direct, " + rl + " relayed, " + t + " trying direct");
    }
    if (relays != "0" || member(*r, "service") != nullptr || !kv.empty()) {
      kv.add("registered", text(member(*r, "registered")) + " of " + relays + " relays");
      if (auto e = strMember(*r, "error"); !e.empty()) kv.add("error", e);
      if (const auto* sv = member(*r, "service"); sv != nullptr && sv->IsObject()) {
        kv.add("service", text(member(*sv, "state")) + ", " + text(member(*sv, "ports")) + " ports, " +
                              text(member(*sv, "bindings")) + " bindings, " + text(member(*sv, "sessions")) +
                              " sessions");
        kv.add("forwarded", text(member(*sv, "forwarded_packets")) + " packets, " +
                                text(member(*sv, "forwarded_bytes")) + " bytes");
        if (const auto* d = member(*sv, "dropped"); d != nullptr && d->IsObject())
          kv.add("dropped", "unknown source " + text(member(*d, "unknown_source")) + ", not wireguard " +
                                text(member(*d, "not_wireguard")) + ", no route " + text(member(*d, "no_route")) +
                                ", limits " + text(member(*d, "limits")));
        kv.add("registrations", text(member(*sv, "registrations")) + " (rejected " +
                                    text(member(*sv, "registrations_rejected")) + ")");
        if (auto e = strMember(*sv, "error"); !e.empty()) kv.add("service error", e);
      }
      section(out, "relay", kv);
    }
  }
  if (const auto* r = member(s, "reports"); r != nullptr && r->IsObject()) {
    KeyValues kv;
    std::string pending = text(member(*r, "pending"));
    if (auto st = strMember(*r, "state"); !st.empty()) pending += " (" + st + ")";
    kv.add("pending", pending);
    section(out, "reports", kv);
  }
  KeyValues tail;
  const auto* alarms = member(s, "alarms");
  if (alarms != nullptr && alarms->IsArray() && !alarms->Empty()) {
    KeyValues kv;
    for (const auto& a : alarms->GetArray()) kv.add(text(member(a, "name")), text(member(a, "message"), ""));
    section(out, "alarms", kv);
  } else {
    tail.add("alarms", "none");
  }
  if (auto e = strMember(s, "last_error"); !e.empty()) tail.add("last error", e);
  out += tail.render();
  return out;
}

std::string renderPeers(const rapidjson::Value& doc, WallTime now) {
  const auto* peers = member(doc, "peers");
  const auto* statsMember = member(doc, "stats");
  bool stats = statsMember == nullptr || !statsMember->IsBool() || statsMember->GetBool();
  if (peers == nullptr || !peers->IsArray() || peers->Empty()) return "no peers\n";
  Table t({"NODE", "MESH IP", "ENDPOINT", "PATH", "HANDSHAKE", "RX", "TX"});
  for (const auto& p : peers->GetArray()) {
    std::string endpoint = text(member(p, "endpoint"));
    std::string handshake = "-";
    std::string rx = "-";
    std::string tx = "-";
    if (stats) {
      handshake = "never";
      if (const auto* h = member(p, "last_handshake"); h != nullptr && h->IsString() && h->GetStringLength() > 0) {
        auto parsed = parseRfc3339(std::string_view(h->GetString(), h->GetStringLength()));
        auto wall = parsed ? parsed->toWallTime() : std::nullopt;
        handshake = wall ? formatAge(std::chrono::floor<std::chrono::seconds>(now - *wall)) : text(h);
      }
      rx = bytesMember(p, "rx_bytes");
      tx = bytesMember(p, "tx_bytes");
    }
    t.add(
        {text(member(p, "node_id")), text(member(p, "mesh_ip")), endpoint, text(member(p, "path")), handshake, rx, tx});
  }
  std::string out = t.render();
  if (!stats) out += "(plexd-netd did not answer: endpoints, handshakes and byte counters are unknown)\n";
  return out;
}

std::string renderPolicies(const rapidjson::Value& policy) {
  if (!policy.IsObject() || policy.ObjectEmpty()) return "no policy from the control plane\n";
  std::string out;
  KeyValues head;
  head.add("revision", text(member(policy, "revision_id")));
  const auto* rules = member(policy, "rules");
  size_t count = rules != nullptr && rules->IsArray() ? rules->Size() : 0;
  head.add("rules", std::to_string(count));
  out += head.render();
  if (count == 0) return out;
  out += '\n';
  Table t({"ACTION", "PROTO", "SOURCE", "", "DEST", "PORTS"});
  for (const auto& r : rules->GetArray()) {
    std::string ports = "-";
    if (const auto* p = member(r, "ports"); p != nullptr && !p->IsNull()) {
      auto from = unsignedMember(*p, "from");
      auto to = unsignedMember(*p, "to");
      if (from && to) {
        ports = *from == *to ? std::to_string(*from) : std::to_string(*from) + "-" + std::to_string(*to);
      } else {
        ports = text(p);
      }
    }
    t.add({text(member(r, "action")), text(member(r, "protocol")), text(member(r, "source_cidr")), "->",
           text(member(r, "destination_cidr")), ports});
  }
  out += t.render();
  return out;
}

std::string renderState(const rapidjson::Value& s) {
  std::string out = "metadata:\n";
  const auto* md = member(s, "metadata");
  if (md != nullptr && md->IsObject() && !md->ObjectEmpty()) {
    Table t({"KEY", "VALUE"});
    for (const auto& m : md->GetObject()) {
      t.add({sanitize(std::string_view(m.name.GetString(), m.name.GetStringLength())), text(&m.value, "")});
    }
    out += t.render("  ");
  } else {
    out += "  (none)\n";
  }
  auto keys = [&](const char* title, const char* name, bool withType) {
    out += title;
    out += ":\n";
    const auto* list = member(s, name);
    if (list == nullptr || !list->IsArray() || list->Empty()) {
      out += "  (none)\n";
      return;
    }
    Table t(withType ? std::vector<std::string>{"KEY", "VERSION", "CONTENT TYPE"}
                     : std::vector<std::string>{"KEY", "VERSION"});
    for (const auto& e : list->GetArray()) {
      std::vector<std::string> row{text(member(e, "key")), text(member(e, "version"))};
      if (withType) row.push_back(text(member(e, "content_type")));
      t.add(std::move(row));
    }
    out += t.render("  ");
  };
  keys("data", "data_keys", true);
  keys("secrets", "secret_keys", false);
  keys("reports", "report_keys", false);
  return out;
}

std::string renderMetadata(const rapidjson::Value& entry) {
  KeyValues kv;
  kv.add("key", text(member(entry, "key")));
  kv.add("source", "metadata");
  const auto* v = member(entry, "value");
  if (v != nullptr && v->IsString()) {
    kv.add("value", sanitize(std::string_view(v->GetString(), v->GetStringLength()), true));
  } else {
    kv.add("value", text(v));
  }
  return kv.render();
}

std::string renderEntry(const rapidjson::Value& entry, std::string_view source, WallTime now) {
  KeyValues kv;
  kv.add("key", text(member(entry, "key")));
  kv.add("source", std::string(source));
  kv.add("content type", text(member(entry, "content_type")));
  kv.add("version", text(member(entry, "version")));
  kv.add("updated", formatTime(member(entry, "updated_at"), now));
  const auto* p = member(entry, "payload");
  std::string payload;
  if (p == nullptr) {
    payload = "-";
  } else if (source == "data" && p->IsString()) {
    payload = sanitize(std::string_view(p->GetString(), p->GetStringLength()), true);
  } else {
    payload = sanitize(prettyJson(*p), true);
  }
  while (!payload.empty() && payload.back() == '\n') payload.pop_back();
  // Always on lines of its own, so a one-line payload reads the same as a long one.
  if (payload.find('\n') == std::string::npos) payload += "\n";
  kv.add("payload", payload);
  return kv.render();
}

}  // namespace plexd::ctl
