# worker/engine.cmake: the training engine (models, layers, data), included by
# worker/CMakeLists.txt. A static, position-independent library so that both the worker binary
# and the shared client library can link it.
pkg_check_modules(ZLIB REQUIRED IMPORTED_TARGET zlib)
pkg_check_modules(CURL REQUIRED IMPORTED_TARGET libcurl)

add_library(smlt_engine STATIC
  ${CMAKE_CURRENT_LIST_DIR}/nn_conv.c
  ${CMAKE_CURRENT_LIST_DIR}/nn_layer.c
  ${CMAKE_CURRENT_LIST_DIR}/nn_model.c
  ${CMAKE_CURRENT_LIST_DIR}/data_set.c
  ${CMAKE_CURRENT_LIST_DIR}/data_load.c
  ${CMAKE_CURRENT_LIST_DIR}/data_fetch.c)
set_target_properties(smlt_engine PROPERTIES POSITION_INDEPENDENT_CODE ON)
# im2col copies a handful of floats per call (k * c); GCC would turn those loops into memcpy
# calls that cost more than the copies (measured: 10% of a LeNet-5 step). The flag is GCC's
# (clang builds, such as tools/fuzz.sh's, do without it).
if(CMAKE_C_COMPILER_ID STREQUAL "GNU")
  set_source_files_properties(${CMAKE_CURRENT_LIST_DIR}/nn_conv.c PROPERTIES
                              COMPILE_OPTIONS "-fno-tree-loop-distribute-patterns")
endif()
target_include_directories(smlt_engine PUBLIC ${CMAKE_CURRENT_LIST_DIR})
target_link_libraries(smlt_engine PUBLIC smlt_nn_spec smlt_proto smlt_aws PkgConfig::OPENBLAS PkgConfig::ZLIB
                      PkgConfig::CURL Threads::Threads m)
