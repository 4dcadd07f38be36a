# coordinator/modules.cmake: the coordinator's self-contained modules (job specs, the on-disk
# journal, the cost ledger), included by coordinator/CMakeLists.txt. A static library so that
# the daemon, smltctl and the unit suites share them. Model specs are checked with the spec
# module (worker/nn_spec.c), not the training engine: no OpenBLAS, no curl.
if(NOT TARGET PkgConfig::JANSSON)
  pkg_check_modules(JANSSON REQUIRED IMPORTED_TARGET jansson)
endif()

add_library(smlt_coord_core STATIC
  ${CMAKE_CURRENT_LIST_DIR}/coord_spec.c
  ${CMAKE_CURRENT_LIST_DIR}/coord_spec_json.c
  ${CMAKE_CURRENT_LIST_DIR}/coord_spec_source.c
  ${CMAKE_CURRENT_LIST_DIR}/coord_journal.c
  ${CMAKE_CURRENT_LIST_DIR}/coord_ledger.c)
# coordinator/ is searched for "quoted" includes only (-iquote): a header there that shares a
# system header's name (sched.h) must not shadow <sched.h> in everything that links this.
# smlt_admin.h: struct smlt_job_conf; proto/smlt_enum.h: the sync and optimizer enums (headers
# only: no libsmlt).
target_compile_options(smlt_coord_core PUBLIC "SHELL:-iquote ${CMAKE_CURRENT_LIST_DIR}")
target_include_directories(smlt_coord_core PUBLIC ${PROJECT_SOURCE_DIR}/worker/include)
target_link_libraries(smlt_coord_core PUBLIC smlt_proto smlt_nn_spec PkgConfig::JANSSON m)
