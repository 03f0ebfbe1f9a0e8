#!/usr/bin/env bash
# ops/lint.sh — the static checks CI runs after the tests: every C++ file formatted as
# .clang-format says (clang-format, Google base), and clang-tidy (.clang-tidy: bug-prone patterns,
# performance, the naming rules of STYLE.md; services/.clang-tidy adds a 100-line limit per
# function) on every source file in the build's compilation database. Any finding fails.
#
# Usage: ops/lint.sh [--preset NAME] [--format]
#   --preset NAME  the CMake build whose compile commands clang-tidy uses (default ci); it is
#                  configured, and its generated headers built, when missing.
#   --format       rewrite badly formatted files in place instead of failing (no clang-tidy).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=ops/lib/common.sh
source ops/lib/common.sh
preset=ci
format=false
while (($#)); do
  case $1 in
    --preset) (($# >= 2)) || die "--preset needs a preset name"; preset=$2; shift 2 ;;
    --preset=*) preset=${1#--preset=}; shift ;;
    --format) format=true; shift ;;
    *) die "unknown argument '$1' (usage: ops/lint.sh [--preset NAME] [--format])" ;;
  esac
done
ops/setup.sh
require_commands clang-format clang-tidy cmake git

mapfile -t files < <(git ls-files '*.cc' '*.h')
if $format; then
  clang-format -i "${files[@]}"
  exit 0
fi
echo "lint: clang-format on ${#files[@]} files"
if ! clang-format --dry-run --Werror "${files[@]}" 2>/tmp/clickdiff-format.log; then
  grep -E '^[^ ].*: (error|warning):' /tmp/clickdiff-format.log | sed 's/: error:.*/: not formatted/' |
    sort -u >&2
  die "files are not formatted as .clang-format says: run ops/lint.sh --format"
fi

build=build/$preset
[[ -f $build/compile_commands.json ]] || cmake --preset "$preset" >/dev/null
# clang-tidy parses every file as the compiler does: the protobuf headers must exist.
cmake --build "$build" --target clickdiff_schemas >/dev/null
mapfile -t sources < <(
  "$PYTHON" - "$build/compile_commands.json" "$PWD" <<'PY'
import json, os, sys
root = sys.argv[2] + os.sep
for entry in json.load(open(sys.argv[1])):
    path = os.path.realpath(os.path.join(entry["directory"], entry["file"]))
    if path.startswith(root) and not path.startswith(root + "build" + os.sep):
        print(os.path.relpath(path, root))
PY
)
echo "lint: clang-tidy on ${#sources[@]} files, $(nproc) at a time"
start=$SECONDS
status=0
printf '%s\n' "${sources[@]}" |
  xargs -P "$(nproc)" -n 1 clang-tidy -p "$build" --quiet 2>/tmp/clickdiff-tidy.log || status=$?
echo "lint: clang-tidy took $((SECONDS - start)) s"
# xargs exits 123 when any clang-tidy failed: its findings are printed above (stdout).
if ((status != 0)); then
  grep -E 'error:' /tmp/clickdiff-tidy.log | grep -v 'warnings treated as errors' | sort -u >&2 || true
  die "clang-tidy found problems (above)"
fi
