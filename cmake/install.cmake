# What `cmake --install` puts under the prefix for building services against
# libfdhttp: both libraries, the public headers, fdhttp.pc for pkg-config and
# a CMake package (find_package(fdhttp) gives fdhttp::fdhttp and
# fdhttp::fdhttp_static).  Included from src/lib, where the targets live;
# the executables and their man pages are installed beside their targets.
include(CMakePackageConfigHelpers)

set(FDH_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/fdhttp)

install(TARGETS fdhttp fdhttp_static EXPORT fdhttpTargets
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR})
# Every header in include/fdhttp is public API; private ones sit beside the sources.
install(DIRECTORY ${PROJECT_SOURCE_DIR}/include/fdhttp DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}
        FILES_MATCHING PATTERN "*.h")
install(FILES ${PROJECT_SOURCE_DIR}/docs/man/libfdhttp.3
        DESTINATION ${CMAKE_INSTALL_MANDIR}/man3)

install(EXPORT fdhttpTargets NAMESPACE fdhttp:: DESTINATION ${FDH_CMAKE_DIR})
configure_package_config_file(${CMAKE_CURRENT_LIST_DIR}/fdhttpConfig.cmake.in
  ${CMAKE_CURRENT_BINARY_DIR}/fdhttpConfig.cmake INSTALL_DESTINATION ${FDH_CMAKE_DIR})
# 0.x: a minor release may change the API, so only the same minor matches.
write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/fdhttpConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/fdhttpConfig.cmake
              ${CMAKE_CURRENT_BINARY_DIR}/fdhttpConfigVersion.cmake
        DESTINATION ${FDH_CMAKE_DIR})

# fdhttp.pc.  The static library needs the libraries the shared one links
# privately.
set(FDH_PC_REQUIRES_PRIVATE libbsd)
if(LIBSECCOMP_FOUND)
  string(APPEND FDH_PC_REQUIRES_PRIVATE " libseccomp")
endif()
# The prefix is the one given at install time (cmake --install --prefix),
# which configure time cannot know: the file is written by the install step,
# then installed like any other.
set(FDH_PC_PREFIX "@FDH_PC_PREFIX@")	# kept for the install step to fill in
configure_file(${CMAKE_CURRENT_LIST_DIR}/fdhttp.pc.in ${CMAKE_CURRENT_BINARY_DIR}/fdhttp.pc.in
               @ONLY)
install(CODE "
  set(FDH_PC_PREFIX \"\${CMAKE_INSTALL_PREFIX}\")
  configure_file(\"${CMAKE_CURRENT_BINARY_DIR}/fdhttp.pc.in\"
                 \"${CMAKE_CURRENT_BINARY_DIR}/fdhttp.pc\" @ONLY)
")
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/fdhttp.pc
        DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
