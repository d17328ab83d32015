#!/bin/bash
# Installs what is missing, builds fdhttp into ./build and runs the whole test
# suite.  Arguments are passed on to ctest (for instance -R integration/).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
./contrib/install-deps.sh
cmake -S . -B build
cmake --build build -j"$(nproc)"
ctest --test-dir build --output-on-failure "$@"
