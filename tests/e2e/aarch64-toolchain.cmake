# The e2e guest's build: static aarch64 executables, cross-compiled inside the e2e chroot (tests/e2e/prepare)
# with Debian's aarch64-linux-gnu toolchain against the arm64 multiarch libraries installed there
# (libfmt-dev:arm64, libfdt-dev:arm64). tests/e2e/build-guest configures with it.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)
# find_package/find_library look in /usr/lib/aarch64-linux-gnu (multiarch), never at the build machine's
# x86_64 libraries (VSMMU_STATIC makes find_library take static archives only).
set(CMAKE_LIBRARY_ARCHITECTURE aarch64-linux-gnu)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)

set(VSMMU_STATIC ON CACHE BOOL "")
set(VSMMU_TESTS OFF CACHE BOOL "")
set(VSMMU_BENCH OFF CACHE BOOL "")
set(VSMMU_E2E_GUEST ON CACHE BOOL "")
