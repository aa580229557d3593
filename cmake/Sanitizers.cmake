# COLO_SANITIZE=address,undefined or thread: the whole build instrumented, in a build directory of
# its own (`make asan`, `make tsan`). Any report aborts the process: a test cannot pass over it.
set(COLO_SANITIZE "" CACHE STRING "Sanitizers to build with: address,undefined | thread | empty for none")
if(COLO_SANITIZE)
  add_compile_options(-fsanitize=${COLO_SANITIZE} -fno-omit-frame-pointer -fno-sanitize-recover=all)
  add_link_options(-fsanitize=${COLO_SANITIZE})
  # Default options for processes started with a scrubbed environment (colo-cni): see the file.
  add_library(colo_sanitizer_defaults OBJECT ${CMAKE_CURRENT_LIST_DIR}/sanitizer_defaults.cpp)
  target_compile_definitions(colo_sanitizer_defaults PRIVATE COLO_SANITIZER_REPORTS="${CMAKE_BINARY_DIR}/sanitizer-reports")
endif()

# colo_static(target): a fully static binary (colo-cni, coloctl, the examples run on hosts and in
# containers whose libraries we do not know). Sanitizer runtimes link only dynamically, so a
# sanitizer build makes them dynamic.
function(colo_static target)
  if(NOT COLO_SANITIZE)
    target_link_options(${target} PRIVATE -static)
  endif()
endfunction()
