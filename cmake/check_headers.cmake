# Header self-containment check ("every header compiles on its own"), run as a ctest test:
#
#   cmake -DSETTINGS=<build>/tests/check_headers_settings.cmake [-DONLY=<regex>] [-DCOMPILED=ON]
#         -P cmake/check_headers.cmake
#
# SETTINGS is written by tests/CMakeLists.txt at configure time and sets:
#   ACTLENS_CHECK_CXX            the compiler of the build (g++ or clang++)
#   ACTLENS_CHECK_INCLUDE_ROOT   the repository's include/ folder
#   ACTLENS_CHECK_INCLUDE_DIRS   include folders of actlens::actlens and its dependencies (Eigen, ...)
#   ACTLENS_CHECK_DEFINITIONS    their compile definitions
#   ACTLENS_CHECK_IMPLICIT_DIRS  the compiler's own include folders (never passed with -I)
#   ACTLENS_CHECK_EXTRA_FLAGS    OpenMP flags when the build links OpenMP
#   ACTLENS_CHECK_WORK_DIR       where the generated .cpp files go
#   ACTLENS_CHECK_MPI_DIRS       MPI's include folders (empty: the actlens/mpi headers are skipped)
#
# The headers are found when the test runs (no list to keep up to date). For each header a .cpp that
# includes only that header (twice, which also checks its include guard) is compiled with
# -std=c++17 -fsyntax-only, a few at a time. The test fails listing every header that does not compile,
# with the compiler's first diagnostics for each.
# -DCOMPILED=ON checks, with ACTLENS_COMPILED defined (a program linked with actlens::compiled), the
# headers that hold `ACTLENS_EXTERN_TEMPLATE` lines: their extern template declarations must compile on
# their own too (include/actlens/compiled.hpp).
cmake_minimum_required(VERSION 3.16)

if(NOT SETTINGS OR NOT EXISTS "${SETTINGS}")
  message(FATAL_ERROR "check_headers.cmake: pass -DSETTINGS=<file> (written by tests/CMakeLists.txt)")
endif()
include("${SETTINGS}")

file(GLOB_RECURSE headers RELATIVE "${ACTLENS_CHECK_INCLUDE_ROOT}"
     "${ACTLENS_CHECK_INCLUDE_ROOT}/actlens/*.hpp" "${ACTLENS_CHECK_INCLUDE_ROOT}/actlens/*.h")
list(SORT headers)
# actlens/mpi/* include <mpi.h>: checked only when the build found MPI (ACTLENS_MPI).
if(NOT ACTLENS_CHECK_MPI_DIRS)
  list(FILTER headers EXCLUDE REGEX "^actlens/mpi/")
endif()
# -DONLY=<regex> checks only the matching headers (the MPI build checks actlens/mpi/ alone).
if(ONLY)
  list(FILTER headers INCLUDE REGEX "${ONLY}")
endif()
if(COMPILED)
  set(with_extern "")
  foreach(header IN LISTS headers)
    file(STRINGS "${ACTLENS_CHECK_INCLUDE_ROOT}/${header}" lines REGEX "^ACTLENS_EXTERN_TEMPLATE" LIMIT_COUNT 1)
    if(lines)
      list(APPEND with_extern "${header}")
    endif()
  endforeach()
  set(headers ${with_extern})
  list(APPEND ACTLENS_CHECK_DEFINITIONS ACTLENS_COMPILED)
  set(flags_note " -DACTLENS_COMPILED")
  set(ACTLENS_CHECK_WORK_DIR "${ACTLENS_CHECK_WORK_DIR}_compiled") # beside the other check, never in its folder
endif()
list(LENGTH headers n_headers)
if(n_headers EQUAL 0)
  message(FATAL_ERROR "check_headers.cmake: no header found under ${ACTLENS_CHECK_INCLUDE_ROOT}/actlens")
endif()

# Compiler flags: the repository's include/ first, then the dependencies' folders, minus the compiler's
# implicit ones (an -I/usr/include breaks libstdc++'s #include_next).
set(flags -std=c++17 -fsyntax-only -I${ACTLENS_CHECK_INCLUDE_ROOT})
list(REMOVE_DUPLICATES ACTLENS_CHECK_INCLUDE_DIRS)
foreach(dir IN LISTS ACTLENS_CHECK_INCLUDE_DIRS)
  if(dir STREQUAL "" OR dir STREQUAL ACTLENS_CHECK_INCLUDE_ROOT OR dir IN_LIST ACTLENS_CHECK_IMPLICIT_DIRS)
    continue()
  endif()
  list(APPEND flags -isystem ${dir})
endforeach()
foreach(dir IN LISTS ACTLENS_CHECK_MPI_DIRS)
  list(APPEND flags -isystem ${dir})
endforeach()
foreach(def IN LISTS ACTLENS_CHECK_DEFINITIONS)
  if(NOT def STREQUAL "")
    list(APPEND flags -D${def})
  endif()
endforeach()
separate_arguments(extra UNIX_COMMAND "${ACTLENS_CHECK_EXTRA_FLAGS}")
list(APPEND flags ${extra})

# One translation unit per header; start from an empty folder so removed headers leave nothing behind.
file(REMOVE_RECURSE "${ACTLENS_CHECK_WORK_DIR}")
file(MAKE_DIRECTORY "${ACTLENS_CHECK_WORK_DIR}")
set(sources "")
foreach(header IN LISTS headers)
  string(REGEX REPLACE "[/.]" "_" stem "${header}")
  set(source "${ACTLENS_CHECK_WORK_DIR}/${stem}.cpp")
  file(WRITE "${source}" "#include <${header}>\n#include <${header}>\nint main() { return 0; }\n")
  list(APPEND sources "${source}")
endforeach()

# execute_process runs several COMMANDs at once (as a pipeline; a compiler with -fsyntax-only neither
# reads stdin nor writes stdout), which gives a parallel check without a build system.
cmake_host_system_information(RESULT jobs QUERY NUMBER_OF_LOGICAL_CORES)
if(jobs LESS 1)
  set(jobs 1)
endif()

set(failed "")
set(index 0)
while(index LESS n_headers)
  set(batch_args "")
  set(batch_headers "")
  set(batch_sources "")
  set(k 0)
  while(k LESS jobs AND index LESS n_headers)
    list(GET headers ${index} header)
    list(GET sources ${index} source)
    list(APPEND batch_args COMMAND ${ACTLENS_CHECK_CXX} ${flags} ${source})
    list(APPEND batch_headers "${header}")
    list(APPEND batch_sources "${source}")
    math(EXPR k "${k} + 1")
    math(EXPR index "${index} + 1")
  endwhile()
  execute_process(${batch_args}
                  INPUT_FILE /dev/null
                  RESULTS_VARIABLE results OUTPUT_QUIET ERROR_QUIET)
  set(i 0)
  foreach(result IN LISTS results)
    list(GET batch_headers ${i} header)
    if(NOT result STREQUAL "0")
      list(APPEND failed "${header}")
    endif()
    math(EXPR i "${i} + 1")
  endforeach()
endwhile()

if(failed)
  list(LENGTH failed n_failed)
  # Compile each failing header again on its own, to show its diagnostics unmixed.
  foreach(header IN LISTS failed)
    string(REGEX REPLACE "[/.]" "_" stem "${header}")
    execute_process(COMMAND ${ACTLENS_CHECK_CXX} ${flags} "${ACTLENS_CHECK_WORK_DIR}/${stem}.cpp"
                    INPUT_FILE /dev/null OUTPUT_VARIABLE out ERROR_VARIABLE err)
    # Diagnostics contain ';', so cut by characters rather than treating them as a list of lines.
    set(text "${out}${err}")
    string(LENGTH "${text}" n_chars)
    if(n_chars GREATER 4000)
      string(SUBSTRING "${text}" 0 4000 text)
      string(APPEND text "\n... (${n_chars} characters in all)\n")
    endif()
    message("---- ${header} does not compile on its own:\n${text}")
  endforeach()
  string(REPLACE ";" "\n  " list_text "${failed}")
  message(FATAL_ERROR "${n_failed} of ${n_headers} headers do not compile on their own with "
                      "${ACTLENS_CHECK_CXX} -std=c++17:\n  ${list_text}")
endif()

message("all ${n_headers} headers under include/actlens compile on their own "
        "(${ACTLENS_CHECK_CXX} -std=c++17 -fsyntax-only${flags_note})")
