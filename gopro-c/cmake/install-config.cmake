# Writes gopro's CMake package files into DEST (PREFIX/lib/cmake/gopro):
# goproConfig.cmake from goproConfig.cmake.in, and goproConfigVersion.cmake
# by CMake's own write_basic_package_version_file.
# Run by scripts/install-c.sh:
#   cmake -DDEST=... -DVERSION=x.y.z -DNATIVE="-lfoo -lbar" -DPOINTER_SIZE=8 -P install-config.cmake
cmake_minimum_required(VERSION 3.14)
include(CMakePackageConfigHelpers)

foreach(var DEST VERSION NATIVE POINTER_SIZE)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "install-config.cmake: -D${var}=... is required")
  endif()
endforeach()

# rustc reports "-lname" flags; CMake wants library names.
separate_arguments(_flags UNIX_COMMAND "${NATIVE}")
set(GOPRO_NATIVE_LIBS "")
foreach(flag IN LISTS _flags)
  if(flag MATCHES "^-l(.+)$")
    list(APPEND GOPRO_NATIVE_LIBS "${CMAKE_MATCH_1}")
  else()
    message(FATAL_ERROR "install-config.cmake: unexpected native library flag ${flag}")
  endif()
endforeach()

configure_file("${CMAKE_CURRENT_LIST_DIR}/goproConfig.cmake.in" "${DEST}/goproConfig.cmake" @ONLY)

# The library is built for one architecture: the version file refuses a
# project of another pointer size, which it checks against this value.
set(CMAKE_SIZEOF_VOID_P "${POINTER_SIZE}")
# Semantic versions as Cargo reads them: from 1.0 a major release may break
# the API, before it a minor one, so 0.1 accepts 0.1.z only.
if(VERSION MATCHES "^0\\.")
  set(_compatibility SameMinorVersion)
else()
  set(_compatibility SameMajorVersion)
endif()
write_basic_package_version_file("${DEST}/goproConfigVersion.cmake"
  VERSION "${VERSION}" COMPATIBILITY ${_compatibility})
