plexd_add_fuzzer(relay_config
  SOURCE ${CMAKE_CURRENT_LIST_DIR}/relay_config.cc
  CORPUS ${PROJECT_SOURCE_DIR}/tests/fuzz/corpus/relay_config
  LIBS plexd_ctld_relay)
