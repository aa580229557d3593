# The warnings colo holds its own code to. COLO_WERROR turns them into errors: the dev build
# (`make build`) and CI set it; a packager's Release or Debug build with another compiler does
# not fail on a warning that compiler invents.
option(COLO_WERROR "Treat compiler warnings as errors" OFF)

# (-Werror sits where it always did: the same command line keeps the shared ccache warm.)
if(COLO_WERROR)
  set(COLO_WERROR_FLAG -Werror)
else()
  set(COLO_WERROR_FLAG)
endif()

function(colo_warnings target)
  target_compile_options(${target} PRIVATE
    -Wall -Wextra -Wpedantic ${COLO_WERROR_FLAG} -Wshadow -Wconversion -Wno-sign-conversion
    -Wnon-virtual-dtor -Wold-style-cast -Wcast-align -Wunused -Woverloaded-virtual
    -Wnull-dereference -Wdouble-promotion -Wformat=2 -Wimplicit-fallthrough -Wno-missing-field-initializers
    # GCC 12 at -O3 (Release) reports a false -Wrestrict inside std::string's inlined
    # operator+ (GCC bug 105329, fixed in GCC 13). -O2 and -O0 do not.
    $<$<AND:$<CXX_COMPILER_ID:GNU>,$<VERSION_LESS:$<CXX_COMPILER_VERSION>,13>,$<CONFIG:Release>>:-Wno-restrict>)
endfunction()
