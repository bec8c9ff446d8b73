// Fuzz the configuration loader: arbitrary YAML text, optionally followed by
// "\n%%\n" and environment lines NAME=value. Must never crash, hang or leak,
// and a configuration that loads must dump to text that loads again to the
// same dump (the canonical form is what plexdctl config shows and what an
// operator may paste back).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "common/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  std::string_view yaml = input;
  plexd::Environment env;
  if (size_t sep = input.find("\n%%\n"); sep != std::string_view::npos) {
    yaml = input.substr(0, sep);
    std::string_view rest = input.substr(sep + 4);
    while (!rest.empty()) {
      const size_t nl = rest.find('\n');
      const std::string_view line = rest.substr(0, nl);
      const size_t eq = line.find('=');
      if (eq != std::string_view::npos) env[std::string(line.substr(0, eq))] = std::string(line.substr(eq + 1));
      if (nl == std::string_view::npos) break;
      rest.remove_prefix(nl + 1);
    }
  }
  auto r = plexd::parseConfig(yaml, "fuzz.yaml", env);
  if (!r) return 0;
  const bool secrets = !r->registration.tokenValue.empty() || !r->metrics.localEndpoint.secretKey.empty() ||
                       !r->logFwd.localEndpoint.secretKey.empty() || !r->auditFwd.localEndpoint.secretKey.empty();
  if (secrets) return 0;  // redacted in the dump, so not expected to round-trip
  const std::string dump = plexd::dumpConfig(*r);
  auto again = plexd::parseConfig(dump, "dump.yaml", {});
  if (!again || plexd::dumpConfig(*again) != dump) std::abort();
  return 0;
}
