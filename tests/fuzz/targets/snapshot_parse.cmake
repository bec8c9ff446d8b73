plexd_add_fuzzer(snapshot_parse
  SOURCE ${CMAKE_CURRENT_LIST_DIR}/snapshot_parse.cc
  CORPUS ${PROJECT_SOURCE_DIR}/tests/fuzz/corpus/snapshot_parse
  LIBS plexd_ctld_reconcile)
