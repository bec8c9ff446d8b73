// Structured logging.
//
// Under systemd (JOURNAL_STREAM matches stderr) records go to the journal as
// native fields: MESSAGE, PRIORITY, SYSLOG_IDENTIFIER and one PLEXD_<KEY> per
// field. Otherwise one readable line per record goes to stderr:
//
//   2026-11-23T12:00:00.123Z info ctld: registered node_id=n-1 mesh_ip=10.0.0.2
//
// Secrets never reach a log: SecretBytes has no conversion to a Field, and
// callers log identifiers (key fingerprints, ids), never key material.
#pragma once

#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include <fmt/format.h>

namespace plexd::log {

enum class Level { debug = 7, info = 6, notice = 5, warning = 4, error = 3, critical = 2 };

// "debug", "info", "notice", "warning", "error", "critical".
std::string_view levelName(Level level);
std::optional<Level> parseLevel(std::string_view name);

struct Field {
  Field(std::string_view k, std::string_view v) : key(k), value(v) {}
  Field(std::string_view k, const char* v) : key(k), value(v ? v : "") {}
  Field(std::string_view k, const std::string& v) : key(k), value(v) {}
  template <class N>
    requires std::is_arithmetic_v<N>
  Field(std::string_view k, N v) : key(k), value(fmt::to_string(v)) {}
  std::string_view key;  // lowercase snake_case, e.g. "ipc_type"
  std::string value;
};

enum class Sink { automatic, stderr_text, journal };

// Set the identifier (e.g. "plexd-ctld"), minimum level and sink. Safe to call
// again (e.g. after a config reload). Before setup, records go to stderr at
// info level with identifier "plexd".
void setup(std::string_view ident, Level min, Sink sink = Sink::automatic);
void setLevel(Level min);
bool enabled(Level level);

// Test hook: capture records as rendered stderr lines instead of writing them.
void captureForTest(std::string* into);

void write(Level level, std::string_view message, std::initializer_list<Field> fields = {});

namespace detail {
// The journal entry for a record: MESSAGE=, PRIORITY=, SYSLOG_IDENTIFIER=,
// then PLEXD_<KEY>= per field (key upper-cased, non-alphanumerics to '_').
std::vector<std::string> journalFields(Level level, std::string_view ident, std::string_view message,
                                       std::initializer_list<Field> fields);
}  // namespace detail

inline void debug(std::string_view m, std::initializer_list<Field> f = {}) { write(Level::debug, m, f); }
inline void info(std::string_view m, std::initializer_list<Field> f = {}) { write(Level::info, m, f); }
inline void notice(std::string_view m, std::initializer_list<Field> f = {}) { write(Level::notice, m, f); }
inline void warning(std::string_view m, std::initializer_list<Field> f = {}) { write(Level::warning, m, f); }
inline void error(std::string_view m, std::initializer_list<Field> f = {}) { write(Level::error, m, f); }
inline void critical(std::string_view m, std::initializer_list<Field> f = {}) { write(Level::critical, m, f); }

}  // namespace plexd::log
