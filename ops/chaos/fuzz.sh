#!/usr/bin/env bash
# ops/chaos/fuzz.sh — fuzzes every decoder of outside input with libFuzzer under ASan + UBSan (leak
# detection on) and prints one line per target: executions, coverage, corpus, crashes.
#
# Targets (ops/chaos/fuzz/<target>_fuzzer.cc): event (Kafka records through the graph's decode
# stage: protobuf events with PNG/raw payloads and label maps), png, raw, clicks (JSON Lines),
# config (YAML), query (ZeroMQ requests). Each starts from its committed seed corpus,
# ops/chaos/fuzz/corpus/<target>/, and grows a working corpus in build/fuzz/corpus/<target>/ kept
# between runs. An input that crashes is saved in build/fuzz/crashes/<target>/ (emptied at the
# start of each run) and the script exits 1; once fixed, add the input to the seed corpus: ctest
# then replays it (label "fuzz") and every later fuzzing run starts from it.
#
# Usage: ops/chaos/fuzz.sh [--seconds N] [TARGET...]
#   --seconds N  fuzzing time per target (default 600; CI runs a short one)
#   TARGET...    the targets to run (default: all six)
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=ops/lib/common.sh
source ops/lib/common.sh

ALL_TARGETS=(event png raw clicks config query)
seconds=600
targets=()
while (($#)); do
  case $1 in
    --seconds) (($# >= 2)) || die "--seconds needs a number"; seconds=$2; shift 2 ;;
    --seconds=*) seconds=${1#--seconds=}; shift ;;
    -*) die "unknown option '$1' (usage: ops/chaos/fuzz.sh [--seconds N] [TARGET...])" ;;
    *) [[ " ${ALL_TARGETS[*]} " == *" $1 "* ]] || die "unknown target '$1' (${ALL_TARGETS[*]})"
       targets+=("$1"); shift ;;
  esac
done
[[ $seconds =~ ^[1-9][0-9]*$ ]] || die "--seconds must be a positive whole number, got '$seconds'"
((${#targets[@]})) || targets=("${ALL_TARGETS[@]}")

# Prerequisites before minutes of building: clang with its libFuzzer runtime.
require_commands cmake ninja clang++
probe=$(mktemp -d)
echo 'extern "C" int LLVMFuzzerTestOneInput(const char*, unsigned long) { return 0; }' \
  >"$probe/probe.cc"
if ! clang++ -fsanitize=fuzzer,address "$probe/probe.cc" -o "$probe/probe" 2>"$probe/log"; then
  why=$(head -1 "$probe/log")
  rm -rf "$probe"
  die "clang++ cannot link libFuzzer ($why): run ops/setup.sh"
fi
rm -rf "$probe"

cmake --preset fuzz >/dev/null
echo "fuzz: building ${#targets[@]} targets (clang, ASan + UBSan)"
if ! cmake --build --preset fuzz --parallel "$(nproc)" >build/fuzz-build.log 2>&1; then
  tail -30 build/fuzz-build.log >&2
  die "the fuzz preset did not build (build/fuzz-build.log)"
fi

build=build/fuzz
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:symbolize=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
printf '%-7s %8s %10s %8s %6s %6s %7s\n' target seconds execs exec/s cov corpus crashes
failed=()
for target in "${targets[@]}"; do
  work=$build/corpus/$target
  crashes=$build/crashes/$target
  rm -rf "$crashes"  # this run's finds only: a fixed crash goes into the seed corpus
  mkdir -p "$work" "$crashes"
  log=$build/fuzz-$target.log
  status=0
  # -timeout: an input that runs 10 s is a hang; -rss_limit_mb: the service's own memory budget.
  "$build/ops/chaos/fuzz/clickdiff_fuzz_$target" -max_total_time="$seconds" -timeout=10 \
    -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$crashes/" \
    "$work" "ops/chaos/fuzz/corpus/$target" >"$log" 2>&1 || status=$?
  # A target that died before its first report prints no figures: "?" then, and the error below.
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  cov=$({ grep -oE 'cov: [0-9]+' "$log" || true; } | tail -1 | cut -d' ' -f2)
  corpus=$(find "$work" -type f | wc -l)
  found=$(find "$crashes" -type f | wc -l)
  printf '%-7s %8s %10s %8s %6s %6s %7s\n' "$target" "$seconds" "${execs:-?}" \
    "$((${execs:-0} / seconds))" "${cov:-?}" "$corpus" "$found"
  if ((status != 0 || found > 0)); then
    failed+=("$target")
    grep -m1 -E 'ERROR|SUMMARY|deadly signal|runtime error' "$log" >&2 || tail -5 "$log" >&2
  fi
done
if ((${#failed[@]})); then
  die "crashes in ${failed[*]}: inputs in $build/crashes/, logs in $build/fuzz-TARGET.log"
fi
echo "fuzz: 0 crashes in ${#targets[@]} targets"
