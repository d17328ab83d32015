# llhttp: a system library when one is installed, otherwise the C sources that
# Debian's node-llhttp ships, compiled into libfdhttp.  Either way it runs
# strict: no lenient flags are ever set.
find_path(LLHTTP_SYSTEM_INCLUDE llhttp.h)
find_library(LLHTTP_SYSTEM_LIB llhttp)
set(LLHTTP_SRC_DIR /usr/share/llhttp CACHE PATH "llhttp C sources (node-llhttp)")
set(LLHTTP_INC_DIR /usr/share/include/llhttp CACHE PATH "llhttp header (node-llhttp)")

if(LLHTTP_SYSTEM_INCLUDE AND LLHTTP_SYSTEM_LIB)
  add_library(fdh_llhttp INTERFACE)
  target_include_directories(fdh_llhttp SYSTEM INTERFACE ${LLHTTP_SYSTEM_INCLUDE})
  target_link_libraries(fdh_llhttp INTERFACE ${LLHTTP_SYSTEM_LIB})
  message(STATUS "llhttp: system library ${LLHTTP_SYSTEM_LIB}")
elseif(EXISTS ${LLHTTP_SRC_DIR}/llhttp.c AND EXISTS ${LLHTTP_INC_DIR}/llhttp.h)
  add_library(fdh_llhttp OBJECT ${LLHTTP_SRC_DIR}/llhttp.c ${LLHTTP_SRC_DIR}/api.c
                                ${LLHTTP_SRC_DIR}/http.c)
  target_include_directories(fdh_llhttp SYSTEM PUBLIC ${LLHTTP_INC_DIR})
  target_compile_definitions(fdh_llhttp PUBLIC LLHTTP_STRICT_MODE=1)
  target_compile_options(fdh_llhttp PRIVATE -w)
  message(STATUS "llhttp: sources from ${LLHTTP_SRC_DIR}")
else()
  message(FATAL_ERROR "llhttp not found: install the Debian package node-llhttp "
                      "(contrib/install-deps.sh does), or a system llhttp")
endif()
