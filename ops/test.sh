#!/usr/bin/env bash
# ops/test.sh — installs what is missing, builds with -Werror and runs every test.
#
# Usage: ops/test.sh [ctest arguments...]   e.g. ops/test.sh -L config   or   ops/test.sh -R Cli
# Build tree: build/ci (CMake preset "ci"). Set CLICKDIFF_PRESET=asan for the sanitizer build.
set -euo pipefail
cd "$(dirname "$0")/.."
ops/setup.sh
preset=${CLICKDIFF_PRESET:-ci}
unset CLICKDIFF_PRESET  # the programs reject CLICKDIFF_* variables that are not config keys
cmake --preset "$preset" >/dev/null
cmake --build --preset "$preset" --parallel "$(nproc)"
ctest --preset "$preset" --parallel "$(nproc)" "$@"
