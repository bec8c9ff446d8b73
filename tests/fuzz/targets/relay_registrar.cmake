plexd_add_fuzzer(relay_registrar
  SOURCE ${CMAKE_CURRENT_LIST_DIR}/relay_registrar.cc
  CORPUS ${PROJECT_SOURCE_DIR}/tests/fuzz/corpus/relay_registrar
  LIBS plexd_relayd_service)
