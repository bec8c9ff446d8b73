# Test helpers. Every test carries exactly one tier label:
#   unit        Catch2, fakes, simulated time; no root, no network
#   component   real daemons on loopback (emulator etc.)
#   integration root + network namespaces / real kernel objects
#   fuzz-smoke  each fuzz target for a few seconds on its committed corpus
#
# plexd_add_catch_test(<name> LABEL <label> SOURCES <...> [LIBS <...>])
#   Builds a Catch2 v2 executable and registers each TEST_CASE with ctest.
# plexd_add_fuzzer(<name> SOURCE <file> CORPUS <dir> [LIBS <...>])
#   With PLEXD_FUZZ (clang): a libFuzzer binary plus a fuzz-smoke test that
#   runs it for PLEXD_FUZZ_SECONDS on CORPUS. Without it: a replay binary that
#   feeds every corpus file to LLVMFuzzerTestOneInput once (label unit), so the
#   corpus is exercised by every build.

find_package(Catch2 2 REQUIRED)
include(Catch)

set(PLEXD_FUZZ_SECONDS 10 CACHE STRING "Seconds per fuzz target in the fuzz-smoke tests")

add_library(plexd_catch_main STATIC ${PROJECT_SOURCE_DIR}/tests/catch_main.cc)
target_link_libraries(plexd_catch_main PUBLIC Catch2::Catch2)
if(PLEXD_SANITIZE)
  target_compile_definitions(plexd_catch_main PRIVATE
    PLEXD_UBSAN_DEFAULT_SUPP="${PROJECT_SOURCE_DIR}/tests/ubsan.supp")
endif()

# Discovered tests run with --warn NoTests: a test name that does not
# round-trip through ctest (Catch2 v2 allows only one --warn, and CMake splits
# names at ';') then fails instead of silently running nothing.
function(plexd_add_catch_test name)
  cmake_parse_arguments(T "" "LABEL;TIMEOUT" "SOURCES;LIBS" ${ARGN})
  if(NOT T_LABEL)
    message(FATAL_ERROR "plexd_add_catch_test(${name}): LABEL is required")
  endif()
  add_executable(${name} ${T_SOURCES})
  plexd_target_defaults(${name})
  target_link_libraries(${name} PRIVATE plexd_catch_main ${T_LIBS})
  target_compile_definitions(${name} PRIVATE
    PLEXD_SOURCE_DIR="${PROJECT_SOURCE_DIR}" PLEXD_BINARY_DIR="${PROJECT_BINARY_DIR}")
  set(props LABELS ${T_LABEL})
  if(T_TIMEOUT)
    # Overrides ctest --timeout (tests that may wait for a shared lock).
    list(APPEND props TIMEOUT ${T_TIMEOUT})
  endif()
  catch_discover_tests(${name}
    TEST_PREFIX "${name}:"
    PROPERTIES ${props}
    EXTRA_ARGS --order rand --warn NoTests)
endfunction()

function(plexd_add_fuzzer name)
  cmake_parse_arguments(F "" "SOURCE;CORPUS" "LIBS" ${ARGN})
  if(PLEXD_FUZZ)
    add_executable(${name} ${F_SOURCE})
    plexd_target_defaults(${name})
    target_link_libraries(${name} PRIVATE ${F_LIBS})
    target_link_options(${name} PRIVATE -fsanitize=fuzzer)
    set(work ${CMAKE_CURRENT_BINARY_DIR}/${name}-corpus)
    add_test(NAME fuzz:${name}
      COMMAND ${CMAKE_COMMAND} -E env ASAN_OPTIONS=detect_leaks=1
              UBSAN_OPTIONS=suppressions=${PROJECT_SOURCE_DIR}/tests/ubsan.supp:print_stacktrace=1:halt_on_error=1
              ${CMAKE_COMMAND} -DFUZZER=$<TARGET_FILE:${name}> -DCORPUS=${F_CORPUS} -DWORK=${work}
              -DSECONDS=${PLEXD_FUZZ_SECONDS} -P ${PROJECT_SOURCE_DIR}/cmake/RunFuzzer.cmake)
    set_tests_properties(fuzz:${name} PROPERTIES LABELS fuzz-smoke TIMEOUT 600)
  else()
    add_executable(${name}-replay ${F_SOURCE} ${PROJECT_SOURCE_DIR}/tests/fuzz/replay_main.cc)
    plexd_target_defaults(${name}-replay)
    target_link_libraries(${name}-replay PRIVATE ${F_LIBS})
    add_test(NAME replay:${name} COMMAND ${name}-replay ${F_CORPUS})
    set_tests_properties(replay:${name} PROPERTIES LABELS unit)
  endif()
endfunction()
