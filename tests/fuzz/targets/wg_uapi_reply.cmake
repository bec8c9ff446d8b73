plexd_add_fuzzer(wg_uapi_reply
  SOURCE ${CMAKE_CURRENT_LIST_DIR}/wg_uapi_reply.cc
  CORPUS ${PROJECT_SOURCE_DIR}/tests/fuzz/corpus/wg_uapi_reply
  LIBS plexd_netd_wg)
