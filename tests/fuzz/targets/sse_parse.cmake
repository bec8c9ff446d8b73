plexd_add_fuzzer(sse_parse
  SOURCE ${CMAKE_CURRENT_LIST_DIR}/sse_parse.cc
  CORPUS ${PROJECT_SOURCE_DIR}/tests/fuzz/corpus/sse_parse
  LIBS plexd_ctld_events)
