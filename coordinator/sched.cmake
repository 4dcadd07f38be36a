# coordinator/sched.cmake: the adaptive scheduler (performance model, cost model, policy), a
# static library with no dependency but libm, so that the coordinator, the simulator
# (tools/smlt_sim.c) and the unit suite link the same code.
add_library(smlt_sched STATIC
  ${CMAKE_CURRENT_LIST_DIR}/sched_model.c
  ${CMAKE_CURRENT_LIST_DIR}/sched_policy.c)
# -iquote, not -I: coordinator/sched.h must not hide the system <sched.h> (pthread.h includes
# it) from the files that link this library.
target_compile_options(smlt_sched PUBLIC -iquote ${CMAKE_CURRENT_LIST_DIR})
target_link_libraries(smlt_sched PUBLIC m)
