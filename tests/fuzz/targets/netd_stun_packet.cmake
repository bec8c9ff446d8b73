plexd_add_fuzzer(netd_stun_packet
  SOURCE ${CMAKE_CURRENT_LIST_DIR}/netd_stun_packet.cc
  CORPUS ${PROJECT_SOURCE_DIR}/tests/fuzz/corpus/netd_stun_packet
  LIBS plexd_netd_nat)
