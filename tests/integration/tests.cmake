# fdh_integration_test(NAME) / fdh_python_test(NAME)
fdh_python_test(test_python_fds)
fdh_python_test(test_curl)
fdh_integration_test(echo_client)
fdh_integration_test(protocol)
fdh_integration_test(fds)
fdh_python_test(test_fdhttpd_socket)
fdh_python_test(test_fdhttpd_workers)
fdh_python_test(test_sandbox)
fdh_python_test(test_cli)
set_property(TEST integration/test_cli APPEND PROPERTY ENVIRONMENT "FDH_CLI=$<TARGET_FILE:fdhttp-cli>")
fdh_python_test(test_python_client)
fdh_python_test(test_install)
set_property(TEST integration/test_install APPEND PROPERTY ENVIRONMENT
  "FDH_CMAKE=${CMAKE_COMMAND}" "FDH_CC=${CMAKE_C_COMPILER}" "FDH_SANITIZE=$<BOOL:${FDH_SANITIZE}>")
fdh_python_test(test_run_tests)
set_property(TEST integration/test_run_tests APPEND PROPERTY ENVIRONMENT "FDH_CMAKE=${CMAKE_COMMAND}")
fdh_python_test(test_systemd)
fdh_python_test(test_nginx)
fdh_python_test(test_bench)
# The sandbox tests' probe service: built for them only, never installed.
add_executable(fdh-sandbox-probe integration/sandbox_probe.c)
target_compile_options(fdh-sandbox-probe PRIVATE ${FDH_WARNINGS})
target_link_libraries(fdh-sandbox-probe PRIVATE fdhttp_static)
# /rogue/retire speaks the control protocol as a compromised worker would:
# the private headers come with the test support.
target_link_libraries(fdh-sandbox-probe PRIVATE fdh_testsupport)
set_property(TEST integration/test_sandbox APPEND PROPERTY ENVIRONMENT
  "FDH_SANDBOX_PROBE=$<TARGET_FILE:fdh-sandbox-probe>")
fdh_python_test(test_broker)
set_property(TEST integration/test_broker APPEND PROPERTY ENVIRONMENT
  "FDH_SANDBOX_PROBE=$<TARGET_FILE:fdh-sandbox-probe>" "FDH_FILES=$<TARGET_FILE:fdhttp-files>")
# Hostile clients and faults.  The 16-fd marathon runs its full count here
# too: about ten seconds in either build.
fdh_python_test(test_hostile)
set_property(TEST integration/test_hostile APPEND PROPERTY ENVIRONMENT
  "FDH_HOSTILE_FD_REQUESTS=100000")
# The fault tests' malloc-failure shim, LD_PRELOADed into fdhttp-echo.  Built
# without the sanitizers: it only passes calls on to whatever allocator the
# process has, AddressSanitizer's included.
add_library(fdh-failmalloc MODULE integration/failmalloc.c)
set_property(TARGET fdh-failmalloc PROPERTY COMPILE_OPTIONS ${FDH_WARNINGS})
set_property(TARGET fdh-failmalloc PROPERTY LINK_OPTIONS "")
target_link_libraries(fdh-failmalloc PRIVATE ${CMAKE_DL_LIBS})
fdh_python_test(test_faults)
# fds whose last close() waits (a lingering TCP socket), sent to fdhttpd and to a worker.
fdh_python_test(test_closer)
set_property(TEST integration/test_faults APPEND PROPERTY ENVIRONMENT
  "FDH_FAILMALLOC_SO=$<TARGET_FILE:fdh-failmalloc>")
