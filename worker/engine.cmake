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
# calls that cost more than the copies (measured: 10% of a LeNet-5 step).
set_source_files_properties(${CMAKE_CURRENT_LIST_DIR}/nn_conv.c PROPERTIES
                            COMPILE_OPTIONS "-fno-tree-loop-distribute-patterns")
target_include_directories(smlt_engine PUBLIC ${CMAKE_CURRENT_LIST_DIR})
target_link_libraries(smlt_engine PUBLIC smlt_proto PkgConfig::OPENBLAS PkgConfig::ZLIB
                      PkgConfig::CURL Threads::Threads m)

# smlt-bench train: compute-only training throughput against PyTorch. tools/smlt_bench.c
# dispatches "smlt-bench train" to bench_train_main(); this standalone binary is for
# working on the engine alone.
set(SMLT_BENCH_TRAIN_DIR ${PROJECT_SOURCE_DIR}/tools)
if(EXISTS ${SMLT_BENCH_TRAIN_DIR}/bench_train.c)
  add_library(smlt_bench_train STATIC ${SMLT_BENCH_TRAIN_DIR}/bench_train.c)
  target_include_directories(smlt_bench_train PUBLIC ${SMLT_BENCH_TRAIN_DIR})
  target_link_libraries(smlt_bench_train PUBLIC smlt_engine)
  target_compile_definitions(smlt_bench_train PRIVATE
                             SMLT_SOURCE_DIR_DEFAULT="${PROJECT_SOURCE_DIR}")
  if(EXISTS ${SMLT_BENCH_TRAIN_DIR}/bench_train_standalone.c)
    add_executable(smlt-bench-train ${SMLT_BENCH_TRAIN_DIR}/bench_train_standalone.c)
    target_link_libraries(smlt-bench-train PRIVATE smlt_bench_train)
  endif()
endif()
