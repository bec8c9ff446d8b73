plexd_add_fuzzer(rtnl_reply
  SOURCE ${CMAKE_CURRENT_LIST_DIR}/rtnl_reply.cc
  CORPUS ${PROJECT_SOURCE_DIR}/tests/fuzz/corpus/rtnl_reply
  LIBS plexd_netd_route)
