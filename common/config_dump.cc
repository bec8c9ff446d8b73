// Canonical dump of a Config and the generated documentation table.
#include <fmt/format.h>

#include "common/config.h"
#include "common/config_schema.h"

namespace plexd {
namespace {

std::vector<std::string_view> splitPath(std::string_view path) {
  std::vector<std::string_view> parts;
  size_t pos = 0;
  while (true) {
    const size_t dot = path.find('.', pos);
    parts.push_back(path.substr(pos, dot == std::string_view::npos ? std::string_view::npos : dot - pos));
    if (dot == std::string_view::npos) return parts;
    pos = dot + 1;
  }
}

std::string renderList(const config::FieldSpec& f, const Config& c, bool inline_) {
  // The accessor only reads here; see readOnly() in config_schema.cc.
  const auto& items = f.items(const_cast<Config&>(c));
  if (inline_ || items.empty()) {
    std::string out = "[";
    for (const auto& i : items) out += (out.size() > 1 ? ", " : "") + config::quoteYaml(i);
    return out + "]";
  }
  return {};
}

std::string mdCell(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == '|') out += "\\|";
    else out += c;
  }
  return out;
}

}  // namespace

std::string dumpConfig(const Config& config) {
  std::string out;
  std::vector<std::string_view> open;  // sections currently open
  for (const auto& f : config::schema()) {
    const auto parts = splitPath(f.path);
    size_t common = 0;
    while (common < open.size() && common + 1 < parts.size() && open[common] == parts[common]) ++common;
    if (common == 0 && !out.empty() && (parts.size() > 1 || open.size() > 0)) out += '\n';
    open.resize(common);
    for (size_t i = common; i + 1 < parts.size(); ++i) {
      out += fmt::format("{:{}}{}:\n", "", 2 * i, parts[i]);
      open.push_back(parts[i]);
    }
    const size_t indent = 2 * (parts.size() - 1);
    if (f.list) {
      const auto& items = f.items(const_cast<Config&>(config));
      if (items.empty()) {
        out += fmt::format("{:{}}{}: []\n", "", indent, parts.back());
      } else {
        out += fmt::format("{:{}}{}:\n", "", indent, parts.back());
        for (const auto& i : items) out += fmt::format("{:{}}- {}\n", "", indent + 2, config::quoteYaml(i));
      }
    } else {
      out += fmt::format("{:{}}{}: {}\n", "", indent, parts.back(), f.render(config));
    }
  }
  return out;
}

std::string configReferenceMarkdown() {
  const Config defaults;
  std::string out;
  std::string section = "\x01";
  for (const auto& f : config::schema()) {
    const size_t dot = f.path.find('.');
    const std::string top = dot == std::string::npos ? "" : f.path.substr(0, dot);
    if (top != section) {
      section = top;
      out += fmt::format("\n### {}\n\n", top.empty() ? "Top-level keys" : fmt::format("`{}`", top));
      out += "| Key | Type | Default | Allowed | Environment | Origin | Description |\n";
      out += "|---|---|---|---|---|---|---|\n";
    }
    std::string def = !f.defaultNote.empty() ? f.defaultNote
                      : f.list               ? renderList(f, defaults, true)
                                             : f.render(defaults);
    out += fmt::format("| `{}` | {} | `{}` | {} | {} | {} | {} |\n", f.path, mdCell(f.type), mdCell(def),
                       mdCell(f.allowed), f.env.empty() ? "—" : fmt::format("`{}`", f.env),
                       f.reference ? "reference" : "plexd", mdCell(f.help));
  }
  return out;
}

std::string_view modeName(Mode m) { return m == Mode::bridge ? "bridge" : "node"; }
std::string_view bearerFormatName(BearerFormat f) { return f == BearerFormat::raw ? "raw" : "envelope"; }
std::string_view policyOnNullName(PolicyOnNull p) { return p == PolicyOnNull::allow ? "allow" : "deny"; }
std::string_view wireguardBackendName(WireguardBackend b) {
  switch (b) {
    case WireguardBackend::kernel: return "kernel";
    case WireguardBackend::userspace: return "userspace";
    default: return "auto";
  }
}

}  // namespace plexd
