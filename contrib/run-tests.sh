#!/bin/bash
# Installs what is missing, builds fdhttp into ./build and runs the whole test
# suite.  Arguments are passed on to ctest (for instance -R integration/).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
./contrib/install-deps.sh
# A ./build configured before with -DFDH_TESTS=OFF (docs/getting-started.md)
# would keep it from the cache: ctest would find nothing and say success.
cmake -S . -B build -DFDH_TESTS=ON
cmake --build build -j"$(nproc)"
ctest --test-dir build --output-on-failure --no-tests=error "$@"
