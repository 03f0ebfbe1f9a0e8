#!/usr/bin/env bash
# ops/experiments/resolution.sh — what the model's grid costs: for each grid in EXP_GRIDS, the
# default model (config/default.yaml, model.resolution set) is trained for EXP_TRAIN_STEPS steps on
# generated images of EXP_SIZE x EXP_SIZE pixels with one click each, then masks those images
# from their clicks with the default sampler (sampler.samples x sampler.steps) and with a click's
# first answer (sampler.preview_samples x preview_steps). Prints, per grid, training steps per
# second, seconds per mask (the sampler and the preview, as `infer` reports them: sampling,
# aggregation and edges at the image's size) and the peak memory (resident set) of each command.
# The figures are costs only: a few training steps teach nothing.
#
#   ops/experiments/resolution.sh [OUT]   (default OUT: out/resolution)
# Settings (environment):
#   EXP_GRIDS        grids (default "64 128 256")
#   EXP_SIZE         image side in pixels (default 256)
#   EXP_IMAGES       images (default 4)
#   EXP_TRAIN_STEPS  training steps per grid (default 20)
#   EXP_SET          further settings for every command, space-separated KEY=VALUE (default none)
#   EXP_PRESET       the CMake preset whose build runs (default release)
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=ops/lib/common.sh
source ops/lib/common.sh
out=${1:-out/resolution}
read -r -a grids <<<"${EXP_GRIDS:-64 128 256}"
size=${EXP_SIZE:-256}
images=${EXP_IMAGES:-4}
train_steps=${EXP_TRAIN_STEPS:-20}
read -r -a sets <<<"${EXP_SET:-}"
fixed=()
for kv in "${sets[@]}"; do
  [[ $kv == *=* ]] || die "EXP_SET: '$kv' is not KEY=VALUE"
  fixed+=(--set "$kv")
done
require_python
build_cli "${EXP_PRESET:-release}"
mkdir -p "$out"
data=$out/images_$size
[[ -d $data && $(find "$data/images" -name '*.png' | wc -l) == "$images" ]] || "$CLI" generate --out "$data" --count "$images" --size "$size" --seed 5 >/dev/null
# sampler_key KEY: the configured sampler.KEY.
sampler_key() {
  "$CLI" config dump "${fixed[@]}" | awk -v key="$1:" '/^[a-z]/ { s = ($1 == "sampler:") }
    s && $1 == key { print $2; exit }'
}
preview_samples=$(sampler_key preview_samples)
preview_steps=$(sampler_key preview_steps)
[[ -n $preview_samples && -n $preview_steps ]] || die "no sampler.preview_samples/preview_steps in the config"

# timed NAME COMMAND...: runs COMMAND with its stdout to OUT/NAME.json and its peak resident set
# (KiB, getrusage of the child) to OUT/NAME.rss.
timed() {
  local name=$1
  shift
  "$PYTHON" -c 'import resource, subprocess, sys
with open(sys.argv[1], "w") as out:
    subprocess.run(sys.argv[3:], stdout=out, check=True)
open(sys.argv[2], "w").write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))' \
    "$out/$name.json" "$out/$name.rss" "$@"
}

for r in "${grids[@]}"; do
  echo "== grid $r"
  grid=(--set "model.resolution=$r" "${fixed[@]}")
  timed "train$r" "$CLI" train --images "$data/images" --clicks "$data/clicks.jsonl" \
    --out "$out/model$r.pt" --steps "$train_steps" "${grid[@]}"
  timed "sample$r" "$CLI" infer --model "$out/model$r.pt" --images "$data/images" \
    --clicks "$data/clicks.jsonl" --out "$out/pred$r" "${grid[@]}"
  timed "preview$r" "$CLI" infer --model "$out/model$r.pt" --images "$data/images" \
    --clicks "$data/clicks.jsonl" --out "$out/preview$r" --samples "$preview_samples" \
    --steps "$preview_steps" "${grid[@]}"
done

"$PYTHON" - "$out" "$size" "${grids[*]}" <<'PY'
import json, sys
out, size, grids = sys.argv[1], sys.argv[2], sys.argv[3].split()
def read(name):
    return json.load(open(f"{out}/{name}.json")), int(open(f"{out}/{name}.rss").read().split()[-1]) / 1024
print(f"images {size}x{size}; peak resident memory of each command in MiB")
print(f"{'grid':>6}{'train steps/s':>15}{'MiB':>7}{'s/mask':>9}{'MiB':>7}"
      f"{'preview s/mask':>16}{'MiB':>7}")
for r in grids:
    train, train_mib = read(f"train{r}")
    sample, sample_mib = read(f"sample{r}")
    preview, preview_mib = read(f"preview{r}")
    print(f"{r:>6}{train['steps_per_second']:15.2f}{train_mib:7.0f}"
          f"{sample['seconds_per_image']:9.2f}{sample_mib:7.0f}"
          f"{preview['seconds_per_image']:16.3f}{preview_mib:7.0f}")
print(f"sampler: {sample['samples']} samples x {sample['network_evaluations_per_sample']} "
      f"network evaluations; preview: {preview['samples']} x "
      f"{preview['network_evaluations_per_sample']}")
PY
