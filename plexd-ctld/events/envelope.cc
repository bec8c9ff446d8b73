#include "plexd-ctld/events/envelope.h"

#include <array>

#include <fmt/format.h>

#include "plexd-ctld/events/go_json.h"

namespace plexd::ctld {
namespace {

enum class Field { id, type, scope, keyId, issuedAt, payload, signature, unknown };

// Folded (goFoldName) spellings of the struct tags.
constexpr std::array<std::pair<std::string_view, Field>, 7> kFields{{
    {"ID", Field::id},
    {"TYPE", Field::type},
    {"SCOPE", Field::scope},
    {"KEY_ID", Field::keyId},
    {"ISSUED_AT", Field::issuedAt},
    {"PAYLOAD", Field::payload},
    {"SIGNATURE", Field::signature},
}};

Field fieldFor(std::string_view quotedName) {
  const std::string folded = goFoldName(goUnquote(quotedName));
  for (const auto& [name, field] : kFields) {
    if (folded == name) return field;
  }
  return Field::unknown;
}

std::string_view fieldName(Field f) {
  switch (f) {
    case Field::id: return "id";
    case Field::type: return "type";
    case Field::scope: return "scope";
    case Field::keyId: return "key_id";
    case Field::issuedAt: return "issued_at";
    case Field::payload: return "payload";
    case Field::signature: return "signature";
    case Field::unknown: break;
  }
  return "?";
}

}  // namespace

Result<Envelope> parseEnvelope(std::string_view data) {
  auto layout = goScanObject(data);
  if (!layout) return layout.error().wrap("envelope is not a valid JSON object");

  Envelope e;
  const JsonMember* signatureMember = nullptr;
  for (const JsonMember& m : layout->members) {
    const Field f = fieldFor(data.substr(m.nameBegin, m.nameEnd - m.nameBegin));
    if (f == Field::unknown) continue;
    const std::string_view value = data.substr(m.valueBegin, m.valueEnd - m.valueBegin);
    if (f == Field::signature) {
      if (signatureMember != nullptr) return Error("envelope has more than one signature member");
      signatureMember = &m;
    }
    if (f == Field::payload) {
      e.payload = std::string(value);
      continue;
    }
    if (value == "null") continue;  // Go: null leaves the field unchanged
    if (value.front() != '"') return Error(fmt::format("envelope field {} is not a string", fieldName(f)));
    if (f == Field::issuedAt) {
      auto t = parseGoTime(value.substr(1, value.size() - 2));
      if (!t) return t.error().wrap("envelope issued_at is invalid");
      e.issuedAt = *t;
      continue;
    }
    std::string s = goUnquote(value);
    switch (f) {
      case Field::id: e.id = std::move(s); break;
      case Field::type: e.type = std::move(s); break;
      case Field::scope: e.scope = std::move(s); break;
      case Field::keyId: e.keyId = std::move(s); break;
      case Field::signature: e.signature = std::move(s); break;
      default: break;
    }
  }

  // Method A: only when the signature is the last member and has a member
  // before it, whose comma starts the removed range.
  if (signatureMember != nullptr && signatureMember == &layout->members.back() &&
      signatureMember->commaPos != std::string_view::npos) {
    std::string a(data.substr(0, signatureMember->commaPos));
    a.append(data.substr(layout->closePos));
    e.methodABytes = std::move(a);
  }
  return e;
}

Result<std::string> canonicalMethodB(const Envelope& e) {
  std::string out;
  out.reserve(96 + e.id.size() + e.type.size() + e.scope.size() + e.keyId.size() + e.payload.size());
  out += "{\"id\":";
  goQuote(e.id, out);
  out += ",\"type\":";
  goQuote(e.type, out);
  out += ",\"scope\":";
  goQuote(e.scope, out);
  out += ",\"key_id\":";
  goQuote(e.keyId, out);
  out += ",\"issued_at\":\"";
  out += e.issuedAt ? e.issuedAt->format() : GoTime{}.format();
  out += "\",\"payload\":";
  if (auto st = goCompact(e.payload, out); !st) return st.error().wrap("envelope payload is not valid JSON");
  out += '}';
  return out;
}

}  // namespace plexd::ctld
