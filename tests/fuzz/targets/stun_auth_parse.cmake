plexd_add_fuzzer(stun_auth_parse
  SOURCE ${CMAKE_CURRENT_LIST_DIR}/stun_auth_parse.cc
  CORPUS ${PROJECT_SOURCE_DIR}/tests/fuzz/corpus/stun_auth_parse
  LIBS plexd_common)
