#!/bin/sh
# Build mtft and run the main job. Installs missing dependencies first.
set -eu
cd "$(dirname "$0")/.."
sh scripts/deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)"
exec ./build/mtft train examples/configs/quickstart.yaml "$@"
