# Writes the metadata of every compiled validator fixture into OUT (the fuzz_metadata seed corpus).
# `framecert check` exits 1 when an object has findings (most fixtures do): only 2 (unusable) is an error.
file(GLOB objects ${FIXTURES}/*.o)
file(REMOVE_RECURSE ${OUT})
file(MAKE_DIRECTORY ${OUT})
execute_process(COMMAND ${FRAMECERT} check --metadata ${OUT} ${objects}
                RESULT_VARIABLE rc OUTPUT_QUIET ERROR_QUIET)
if(NOT rc EQUAL 0 AND NOT rc EQUAL 1)
  message(FATAL_ERROR "framecert check --metadata on the fixtures failed (${rc})")
endif()
file(TOUCH ${STAMP})
