plexd_add_fuzzer(nat_discovery
  SOURCE ${CMAKE_CURRENT_LIST_DIR}/nat_discovery.cc
  CORPUS ${PROJECT_SOURCE_DIR}/tests/fuzz/corpus/nat_discovery
  LIBS plexd_ctld_nat)
