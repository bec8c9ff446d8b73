// The configuration schema: one entry per key, in reference order. Loading,
// environment overrides, the canonical dump and the documentation table are
// all driven by this table, so a key cannot be parsed but undocumented.
#pragma once

#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "common/config.h"
#include "common/config_values.h"

namespace plexd::config {

struct FieldSpec {
  std::string path;     // "api.base_url"
  std::string env;      // "PLEXD_API"; "" = no environment override
  std::string type;     // for documentation: "duration", "path", "list of CIDR", ...
  std::string allowed;  // what is allowed, shown in errors and docs
  std::string help;
  std::string defaultNote;  // documentation default when derived from another key
  bool reference = false;   // the Go reference agent has this key
  bool secret = false;      // never echoed in errors, redacted in dumps
  bool list = false;
  // Scalar: parse, validate and store `text`; on failure the reason, which
  // the caller formats as `<value> <reason> (allowed: <allowed>)`.
  std::function<Reason(Config&, std::string_view text)> set;
  // Scalar: the canonical YAML text of the current value.
  std::function<std::string(const Config&)> render;
  // List: element check, storage, and size limit.
  std::function<Reason(std::string_view)> checkElement;
  std::function<std::vector<std::string>&(Config&)> items;
  size_t maxItems = 0;
};

const std::vector<FieldSpec>& schema();
const FieldSpec* findField(std::string_view path);
// True when some key lives below `path` ("api", "metrics.local_endpoint").
bool isSection(std::string_view path);
// Keys and sections directly below `prefix` ("" for the top level).
std::vector<std::string> childNames(std::string_view prefix);
// Sections and keys of the Go reference agent that plexd accepts and ignores
// with a warning, so an existing config.yaml keeps loading.
bool isIgnoredReferenceKey(std::string_view path);

// YAML double-quoted form of a string.
std::string quoteYaml(std::string_view s);

}  // namespace plexd::config
