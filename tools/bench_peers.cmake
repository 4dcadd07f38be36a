# tools/bench_peers.cmake: the peers of `smlt-bench ps` (loopback TCP ceiling, model sync through
# a private redis-server), as a static library for smlt-bench and tests/unit/test_bench_peers.c.
add_library(smlt_bench_peers STATIC ${CMAKE_CURRENT_LIST_DIR}/bench_peers.c)
target_include_directories(smlt_bench_peers PUBLIC ${CMAKE_CURRENT_LIST_DIR})
target_link_libraries(smlt_bench_peers PUBLIC smlt_proto Threads::Threads)
