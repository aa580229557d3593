# Cross-compiling colo for arm64 with Debian's cross toolchain (g++-aarch64-linux-gnu) and
# multiarch arm64 -dev packages (libfoo-dev:arm64), as scripts/install-deps.sh --arm64 installs
# them. `make arm64` uses this file: it builds colo-cni, colo-node, libcolo and coloctl only and
# checks with readelf that they are AArch64 code (test/cross); it neither builds nor runs the unit
# tests. The emulator below is set only so that a target run by hand under ctest could use it.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)
# Multiarch: libraries, CMake packages and pkg-config files of arm64 live in
# /usr/lib/aarch64-linux-gnu; headers are shared, with arch-specific ones in
# /usr/include/aarch64-linux-gnu (found by the cross compiler itself).
set(CMAKE_LIBRARY_ARCHITECTURE aarch64-linux-gnu)
set(ENV{PKG_CONFIG_LIBDIR} /usr/lib/aarch64-linux-gnu/pkgconfig:/usr/share/pkgconfig)
set(ENV{PKG_CONFIG_PATH} "")
# Tools (clang for BPF, bpftool) are the build machine's.
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
find_program(COLO_QEMU_AARCH64 qemu-aarch64)
if(COLO_QEMU_AARCH64)
  set(CMAKE_CROSSCOMPILING_EMULATOR ${COLO_QEMU_AARCH64})
endif()
