plexd_add_fuzzer(config_parse
  SOURCE ${CMAKE_CURRENT_LIST_DIR}/config_parse.cc
  CORPUS ${PROJECT_SOURCE_DIR}/tests/fuzz/corpus/config_parse
  LIBS plexd_common)
