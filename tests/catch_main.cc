#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>

#ifdef PLEXD_UBSAN_DEFAULT_SUPP
// Sanitizer builds: every test binary halts on the first UBSan finding and
// uses the project's suppression list, also when run by hand without
// UBSAN_OPTIONS (which, when set, takes precedence).
extern "C" const char* __ubsan_default_options();  // NOLINT
extern "C" const char* __ubsan_default_options() {
  return "halt_on_error=1:print_stacktrace=1:suppressions=" PLEXD_UBSAN_DEFAULT_SUPP;
}
#endif
