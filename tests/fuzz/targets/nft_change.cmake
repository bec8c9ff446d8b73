plexd_add_fuzzer(nft_change
  SOURCE ${CMAKE_CURRENT_LIST_DIR}/nft_change.cc
  CORPUS ${PROJECT_SOURCE_DIR}/tests/fuzz/corpus/nft_change
  LIBS plexd_netd_nft)
