# cmake -DBUILD_DIR=... -DTARGET=... -DEXPECT=<regex> -P check.cmake
# Builds TARGET, which must not compile. Exits non-zero (the failure CTest's WILL_FAIL expects) only when
# the build failed AND its output matches EXPECT; exits 0 — so that the test fails — when the target
# compiled, or failed for some other reason.
execute_process(COMMAND ${CMAKE_COMMAND} --build ${BUILD_DIR} --target ${TARGET}
                RESULT_VARIABLE result OUTPUT_VARIABLE out ERROR_VARIABLE err)
set(log "${out}${err}")
if(result EQUAL 0)
  message("${TARGET} compiled, but it should have been rejected with: ${EXPECT}")
  return()
endif()
if(NOT log MATCHES "${EXPECT}")
  message("${TARGET} failed to compile, but not with the expected message '${EXPECT}':\n${log}")
  return()
endif()
string(REGEX MATCH "[^\n]*${EXPECT}[^\n]*" line "${log}")
message(FATAL_ERROR "rejected as expected:\n${line}")
