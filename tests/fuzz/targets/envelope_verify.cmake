plexd_add_fuzzer(envelope_verify
  SOURCE ${CMAKE_CURRENT_LIST_DIR}/envelope_verify.cc
  CORPUS ${PROJECT_SOURCE_DIR}/tests/fuzz/corpus/envelope_verify
  LIBS plexd_ctld_events)
