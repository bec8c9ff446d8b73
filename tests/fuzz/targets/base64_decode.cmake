plexd_add_fuzzer(base64_decode
  SOURCE ${CMAKE_CURRENT_LIST_DIR}/base64_decode.cc
  CORPUS ${PROJECT_SOURCE_DIR}/tests/fuzz/corpus/base64_decode
  LIBS plexd_common)
