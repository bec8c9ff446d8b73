plexd_add_fuzzer(wg_genl_dump
  SOURCE ${CMAKE_CURRENT_LIST_DIR}/wg_genl_dump.cc
  CORPUS ${PROJECT_SOURCE_DIR}/tests/fuzz/corpus/wg_genl_dump
  LIBS plexd_netd_wg)
