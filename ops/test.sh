#!/usr/bin/env bash
# ops/test.sh — installs what is missing, builds with -Werror and runs every test.
#
# Usage: ops/test.sh [--preset NAME] [--] [ctest arguments...]
#   e.g. ops/test.sh -L config   or   ops/test.sh -R Cli   or   ops/test.sh --preset asan -R Cli
#   --preset NAME  the CMake preset built and tested (default ci: build tree build/ci); asan runs
#                  the suite under AddressSanitizer + UBSan. Only as the first argument: everything
#                  after it (or after --) goes to ctest.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=ops/lib/common.sh
source ops/lib/common.sh
preset=ci
case ${1:-} in
  --preset) (($# >= 2)) || die "--preset needs a preset name (e.g. --preset asan)"; preset=$2; shift 2 ;;
  --preset=*) preset=${1#--preset=}; shift ;;
esac
[[ ${1:-} == -- ]] && shift
ops/setup.sh
cmake --preset "$preset" >/dev/null
cmake --build --preset "$preset" --parallel "$(nproc)"
ctest --preset "$preset" --parallel "$(nproc)" "$@"
