#!/bin/sh
# Build mtft and run the whole test suite. Installs missing dependencies first.
#   BUILD_DIR   build directory (default: build)
#   CMAKE_ARGS  extra CMake arguments (e.g. -DMTFT_SANITIZE='address;undefined')
set -eu
cd "$(dirname "$0")/.."
sh scripts/deps.sh
BUILD_DIR="${BUILD_DIR:-build}"
# shellcheck disable=SC2086
cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE="${BUILD_TYPE:-Release}" ${CMAKE_ARGS:-} >/dev/null
cmake --build "$BUILD_DIR" -j"$(nproc)"
cd "$BUILD_DIR"
ctest --output-on-failure -j1 ${CTEST_ARGS:-}
