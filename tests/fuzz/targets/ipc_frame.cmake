plexd_add_fuzzer(ipc_frame
  SOURCE ${CMAKE_CURRENT_LIST_DIR}/ipc_frame.cc
  CORPUS ${PROJECT_SOURCE_DIR}/tests/fuzz/corpus/ipc_frame
  LIBS plexd_ipc)
