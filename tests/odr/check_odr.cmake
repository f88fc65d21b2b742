# tests/odr/check_odr.cmake: runs the ODR test's two executables (the translation units linked in
# both orders, see odr_main.cpp): the first prints its results, the second compares with them.
# cmake -DFIRST=<exe> -DSECOND=<exe> -DWORK_DIR=<dir> -P check_odr.cmake
file(MAKE_DIRECTORY "${WORK_DIR}")
execute_process(COMMAND "${FIRST}" OUTPUT_FILE "${WORK_DIR}/first.txt" RESULT_VARIABLE first_rc)
if(NOT first_rc EQUAL 0)
  message(FATAL_ERROR "${FIRST} failed (${first_rc})")
endif()
execute_process(COMMAND "${SECOND}" "${WORK_DIR}/first.txt" OUTPUT_FILE "${WORK_DIR}/second.txt"
                RESULT_VARIABLE second_rc)
if(NOT second_rc EQUAL 0)
  message(FATAL_ERROR "${SECOND} failed (${second_rc}): it or its comparison with ${FIRST} failed")
endif()
