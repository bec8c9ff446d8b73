# Compiler flags shared by every plexd target.
#
# plexd_target_defaults(<target>) applies warnings and hardening to one target.

set(PLEXD_WARNINGS
  -Wall -Wextra -Wpedantic -Wshadow -Wconversion -Wsign-conversion
  -Wnon-virtual-dtor -Wold-style-cast -Wcast-align -Woverloaded-virtual
  -Wdouble-promotion -Wformat=2 -Wimplicit-fallthrough
  -Wmissing-declarations -Wundef)
# -Wnull-dereference is left out: with -O2, g++ 12 reports it inside
# libstdc++'s own <streambuf> (istreambuf_iterator), a false positive we
# cannot fix at the call site.
if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
  list(APPEND PLEXD_WARNINGS -Wduplicated-cond -Wduplicated-branches -Wlogical-op -Wuseless-cast)
endif()
if(PLEXD_WERROR)
  list(APPEND PLEXD_WARNINGS -Werror)
endif()

set(PLEXD_HARDENING -fstack-protector-strong -fstack-clash-protection -fPIE)
if(NOT PLEXD_SANITIZE AND NOT CMAKE_BUILD_TYPE STREQUAL "Debug")
  add_compile_definitions(_FORTIFY_SOURCE=2)
endif()
add_compile_definitions(_GLIBCXX_ASSERTIONS)
add_link_options(-pie -Wl,-z,relro,-z,now -Wl,-z,noexecstack)

if(PLEXD_SANITIZE)
  # UBSan stays recoverable at compile time so that tests/ubsan.supp can
  # suppress single findings; runs set UBSAN_OPTIONS=halt_on_error=1 (see
  # scripts/test.sh), so any other finding still fails the test.
  add_compile_options(-fsanitize=address,undefined -fno-omit-frame-pointer)
  add_link_options(-fsanitize=address,undefined)
endif()
if(PLEXD_FUZZ)
  if(NOT CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
    message(FATAL_ERROR "PLEXD_FUZZ needs clang: configure with CC=clang CXX=clang++")
  endif()
  # Instrument everything for coverage; fuzz targets link -fsanitize=fuzzer themselves.
  add_compile_options(-fsanitize=fuzzer-no-link)
endif()

function(plexd_target_defaults target)
  target_compile_options(${target} PRIVATE ${PLEXD_WARNINGS} ${PLEXD_HARDENING})
  target_include_directories(${target} PRIVATE ${PROJECT_SOURCE_DIR})
endfunction()
