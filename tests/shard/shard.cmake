# The communicators and the mesh (include/vitscale/shard/): the in-process communicator in one executable;
# the MPI communicator, where MPI is found, in another run under mpirun with 1, 2 and 4 ranks.
vitscale_add_test_executable(shard ${CMAKE_CURRENT_SOURCE_DIR}/shard/communicator.cpp)
set_tests_properties(shard PROPERTIES TIMEOUT 300)
# ViT-22B's sharded block on every mesh of up to 4 ranks, as threads of one process, against the whole model.
vitscale_add_test_executable(shard_vit ${CMAKE_CURRENT_SOURCE_DIR}/shard/sharded_vit.cpp)
set_tests_properties(shard_vit PROPERTIES TIMEOUT 900)

# vitscale_add_mpi_test(NAME name TARGET exe RANKS n [TIMEOUT seconds] [EXPECT_FAILURE regex] [ARGS ...])
# Registers `mpiexec -n n [--oversubscribe] exe args` as a test, with the environment OpenMPI needs in a
# container run as root, and one OpenMP thread per rank (the ranks share the machine's cores).
# EXPECT_FAILURE: the job must end non-zero, within TIMEOUT, with output matching regex (a rank that dies
# or times out must end the job, not hang it); tests/shard/expect_job_failure.cmake checks that.
function(vitscale_add_mpi_test)
  cmake_parse_arguments(PARSE_ARGV 0 arg "" "NAME;TARGET;RANKS;TIMEOUT;EXPECT_FAILURE" "ARGS")
  if(NOT arg_NAME OR NOT arg_TARGET OR NOT arg_RANKS)
    message(FATAL_ERROR "vitscale_add_mpi_test needs NAME, TARGET and RANKS")
  endif()
  if(NOT arg_TIMEOUT)
    set(arg_TIMEOUT 120)
  endif()
  if(NOT DEFINED VITSCALE_MPIEXEC_IS_OPENMPI)
    execute_process(COMMAND ${MPIEXEC_EXECUTABLE} --version OUTPUT_VARIABLE version ERROR_VARIABLE version)
    if(version MATCHES "Open MPI|OpenRTE")
      set(VITSCALE_MPIEXEC_IS_OPENMPI ON CACHE INTERNAL "")
    else()
      set(VITSCALE_MPIEXEC_IS_OPENMPI OFF CACHE INTERNAL "")
    endif()
  endif()
  set(oversubscribe "")
  if(VITSCALE_MPIEXEC_IS_OPENMPI)
    set(oversubscribe --oversubscribe)  # more ranks than cores (the test machine has 2): an OpenMPI flag
  endif()
  set(command ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG} ${arg_RANKS} ${oversubscribe} ${MPIEXEC_PREFLAGS}
              $<TARGET_FILE:${arg_TARGET}> ${MPIEXEC_POSTFLAGS} ${arg_ARGS})
  if(DEFINED arg_EXPECT_FAILURE)
    # A list cannot pass through -D intact: "@@" stands for its separators.
    string(REPLACE ";" "@@" joined "${command}")
    math(EXPR seconds "${arg_TIMEOUT} - 5")
    add_test(NAME ${arg_NAME}
             COMMAND ${CMAKE_COMMAND} "-DCOMMAND=${joined}" "-DEXPECT=${arg_EXPECT_FAILURE}" -DSECONDS=${seconds}
                     -P ${VITSCALE_TESTS_DIR}/shard/expect_job_failure.cmake)
  else()
    add_test(NAME ${arg_NAME} COMMAND ${command})
  endif()
  set(environment "OMPI_ALLOW_RUN_AS_ROOT=1;OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1;OMPI_MCA_btl_vader_single_copy_mechanism=none;OMPI_MCA_rmaps_base_oversubscribe=1;OMP_NUM_THREADS=1;OMP_PROC_BIND=false;OMP_WAIT_POLICY=PASSIVE")
  if(VITSCALE_SANITIZE)
    # OpenMPI does not free what it allocates (libmpi's op selection, and its components, which are dlclose'd
    # at MPI_Finalize and so show as "<unknown module>"): LeakSanitizer would report those at every exit. Leaks
    # stay checked everywhere else, including the in-process runs of the same sharding code; ASan's other
    # checks and UBSan stay on here.
    list(APPEND environment "ASAN_OPTIONS=halt_on_error=1:detect_leaks=0")
  endif()
  set_tests_properties(${arg_NAME} PROPERTIES TIMEOUT ${arg_TIMEOUT} PROCESSORS ${arg_RANKS} ENVIRONMENT "${environment}")
endfunction()

# An MPI test executable: mpi_main.cpp (MPI around Kokkos around doctest) and the area's sources, run under
# mpirun with 1, 2 and 4 ranks as tests <name>.ranks<n>.
function(vitscale_add_mpi_test_executable name timeout)
  add_executable(test_${name} ${VITSCALE_TESTS_DIR}/shard/mpi_main.cpp ${ARGN})
  target_link_libraries(test_${name} PRIVATE vitscale::mpi doctest::doctest)
  target_include_directories(test_${name} PRIVATE ${VITSCALE_TESTS_DIR})
  vitscale_target_defaults(test_${name})
  foreach(ranks 1 2 4)
    vitscale_add_mpi_test(NAME ${name}.ranks${ranks} TARGET test_${name} RANKS ${ranks} TIMEOUT ${timeout})
  endforeach()
endfunction()

if(VITSCALE_HAVE_MPI)
  vitscale_add_mpi_test_executable(shard_mpi 180 ${CMAKE_CURRENT_SOURCE_DIR}/shard/mpi_communicator.cpp)
  # A rank that dies before a collective: mpirun ends the job (OpenMPI kills the others once one rank exits
  # with a non-zero status), naming the rank's exit status.
  vitscale_add_mpi_test(NAME shard_mpi.rank_dies TARGET test_shard_mpi RANKS 2 TIMEOUT 60
                        ARGS --scenario=dies EXPECT_FAILURE "exited on signal|non-zero (exit )?status")
  # A rank alive but skipping a collective: the others time out with an error naming it, and their exit
  # ends the job.
  vitscale_add_mpi_test(NAME shard_mpi.rank_skips TARGET test_shard_mpi RANKS 2 TIMEOUT 60
                        ARGS --scenario=skips EXPECT_FAILURE "all_reduce #0 of 1 floats on MPI, rank 0 of 2 timed out after 1000 ms")

  # ViT-22B's sharded block under mpirun: every mesh of 1, 2 and 4 ranks against the whole model.
  vitscale_add_mpi_test_executable(shard_vit_mpi 600 ${CMAKE_CURRENT_SOURCE_DIR}/shard/sharded_vit_mpi.cpp)
else()
  message(STATUS "vitscale tests: MPI not found (or VITSCALE_ENABLE_MPI=OFF); the MPI communicator tests are left out")
endif()
