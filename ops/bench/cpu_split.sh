#!/usr/bin/env bash
# ops/bench/cpu_split.sh — how clickdiffd's trainer and samplers share the CPU: the same busy
# service (64 generated images, every one clicked, the trainer never out of budget, a new version
# every 50 steps so the samplers keep redrawing) runs for SECONDS seconds under each thread split,
# side by side in one run, and prints training steps/s and masks/s for each.
#
#   ops/bench/cpu_split.sh [SECONDS]   (default 120)
#   BENCH_PRESET   (environment) the CMake preset whose build runs (default release)
# Splits: compute.torch_threads=0 (the default: cores / (sampler threads + trainer)), =1 and =2
# each (2 = every worker takes both cores of a 2-core machine: oversubscribed), and
# sampler.shards=2 with the default split.
# Python runs on /usr/bin/python3 (ops/lib/common.sh); clickdiffd is stopped on any exit, Ctrl-C
# included.
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=ops/lib/common.sh
source ops/lib/common.sh
# shellcheck source=ops/lib/loop.sh
source ops/lib/loop.sh
seconds=${1:-120}
preset=${BENCH_PRESET:-release}
[[ $seconds =~ ^[0-9]+$ ]] || die "SECONDS must be a whole number, not '$seconds'"
require_commands cmake
require_python
cmake --preset "$preset" >/dev/null
cmake --build --preset "$preset" --target clickdiff clickdiffd >/dev/null
cli=build/$preset/services/clickdiff
out=out/bench/cpu_split
rm -rf "${out:?}" && mkdir -p "$out"
"$cli" generate --out "$out/data" --count 64 --seed 1 >/dev/null
echo "split                          train steps/s   masks/s   ($seconds s each, $(nproc) cores)"
for split in "compute.torch_threads=0" "compute.torch_threads=1" "compute.torch_threads=2" \
  "sampler.shards=2"; do
  run=$out/${split//[.=]/_}
  mkdir -p "$run/var"
  service=(--config config/default.yaml --set "store.path=$run/var/db" "${LOOP_SETTINGS[@]}"
    --set trainer.steps_per_click=100000 --set trainer.snapshot_every_steps=50
    --set teacher.enabled=false --set logging.level=debug --set "$split")
  "build/$preset/services/clickdiffd" "${service[@]}" 2>"$run/var/clickdiffd.log" &
  daemon=$!
  track_pid "$daemon" clickdiffd
  wait_for_service "$run/var" "$daemon"
  "$cli" produce "${service[@]}" --images "$out/data/images" --clicks "$out/data/clicks.jsonl" \
    --dataset bench >/dev/null
  sleep_for "$seconds"
  stop_pid "$daemon"
  # The trainer logs every version with its step count; the publisher logs every mask (debug).
  "$PYTHON" - "$run/var/clickdiffd.log" "$seconds" "$split" <<'PY'
import re, sys
log, seconds, split = open(sys.argv[1]).read(), float(sys.argv[2]), sys.argv[3]
steps = [int(s) for s in re.findall(r"model version \d+: (\d+) steps", log)]
masks = len(re.findall(r"\] mask bench/", log))
print(f"{split:30} {max(steps, default=0) / seconds:13.2f} {masks / seconds:9.2f}")
PY
done
