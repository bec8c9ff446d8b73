plexd_add_fuzzer(stun_parse
  SOURCE ${CMAKE_CURRENT_LIST_DIR}/stun_parse.cc
  CORPUS ${PROJECT_SOURCE_DIR}/tests/fuzz/corpus/stun_parse
  LIBS plexd_ctld_nat)
