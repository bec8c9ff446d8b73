plexd_add_fuzzer(apid_request
  SOURCE ${CMAKE_CURRENT_LIST_DIR}/apid_request.cc
  CORPUS ${PROJECT_SOURCE_DIR}/tests/fuzz/corpus/apid_request
  LIBS plexd_apid_lib)
