# Helpers that let scripts/test.sh say what ran and what was not built (scripts/test_summary.py
# reads both files below).
#
# fattn_part(NAME STATUS REASON): records whether an optional part was built; written to
# <build>/fattn-parts.tsv at the end of configure (fattn_write_parts).
# fattn_add_pytest(NAME FILE LABELS ENVIRONMENT [WORKING_DIRECTORY] [TIMEOUT]): a CTest test that
# runs one pytest file and leaves its JUnit report in <build>/pytest-reports/NAME.xml, so the
# summary can count pytest's own cases and skip reasons instead of one CTest pass.

function(fattn_part name status reason)
  # A reason may hold a CMake list (CUDA architectures); its ';' would split the entry.
  string(REPLACE ";" "," reason "${reason}")
  set_property(GLOBAL APPEND PROPERTY FATTN_PARTS "${name}\t${status}\t${reason}")
endfunction()

function(fattn_write_parts)
  get_property(parts GLOBAL PROPERTY FATTN_PARTS)
  set(text "")
  foreach(part IN LISTS parts)
    string(APPEND text "${part}\n")
  endforeach()
  file(WRITE ${CMAKE_BINARY_DIR}/fattn-parts.tsv "${text}")
endfunction()

function(fattn_add_pytest name)
  cmake_parse_arguments(arg "" "FILE;WORKING_DIRECTORY;TIMEOUT" "LABELS;ENVIRONMENT" ${ARGN})
  if(NOT arg_WORKING_DIRECTORY)
    set(arg_WORKING_DIRECTORY ${CMAKE_CURRENT_SOURCE_DIR})
  endif()
  if(NOT arg_TIMEOUT)
    set(arg_TIMEOUT 900)
  endif()
  add_test(NAME ${name}
           COMMAND ${Python3_EXECUTABLE} -m pytest -q -p no:cacheprovider -rs
                   --junitxml=${CMAKE_BINARY_DIR}/pytest-reports/${name}.xml ${arg_FILE}
           WORKING_DIRECTORY ${arg_WORKING_DIRECTORY})
  set_tests_properties(${name} PROPERTIES LABELS "${arg_LABELS}"
                       ENVIRONMENT "${arg_ENVIRONMENT}" TIMEOUT ${arg_TIMEOUT})
endfunction()
