#!/usr/bin/env bash
# ops/experiments/model_core.sh — the model-core comparisons on generated data, through the
# product CLI only (clickdiff generate | train | calibrate | infer | eval):
#   - d3pm (T=200, sampled in sampler.steps respaced steps) and gaussian_x0 (T=4) trained from one
#     click per organ, each with its calibrated aggregation rule; network evaluations per sample;
#   - d3pm sampled with all T=200 steps, for the few-step comparison;
#   - the deterministic U-Net baseline with the same focal loss at several training lengths;
#   - Dice against the number of samples N = 1..32 (from calibrate);
#   - the best fixed-radius click disk.
# Training is counted in steps, not seconds, so the numbers do not depend on machine load.
#
#   ops/experiments/model_core.sh [OUT]      (default OUT: out/model_core)
# Settings (environment):
#   EXP_STEPS        training steps of the diffusion models (default 2000)
#   EXP_UNET_STEPS   the baseline's training lengths (default "250 1000 2000")
#   EXP_PRESET       the CMake preset whose build runs (default release; ci reuses the tree
#                    ops/test.sh built)
# Models and scores already in OUT are reused (delete them to redo a row). Python runs on
# /usr/bin/python3 (ops/lib/common.sh).
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=ops/lib/common.sh
source ops/lib/common.sh
out=${1:-out/model_core}
steps=${EXP_STEPS:-2000}
unet_steps=${EXP_UNET_STEPS:-"250 1000 2000"}
preset=${EXP_PRESET:-release}
require_python
build_cli "$preset"
cli=$CLI
mkdir -p "$out"
generated_sets "$out/data" train val test
data=$out/data

# run NAME METHOD STEPS [calibrate options...]: train, calibrate on validation, score on test.
run() {
  local name=$1 method=$2 train_steps=$3
  shift 3
  local set=(--set "model.method=$method")
  if [[ ! -f $out/$name.pt ]]; then
    echo "== train $name ($method, $train_steps steps)"
    "$cli" train "${set[@]}" --images "$data/train/images" --clicks "$data/train/clicks.jsonl" \
      --out "$out/$name.pt" --steps "$train_steps" | tail -n 1 >"$out/train_$name.json"
  fi
  if [[ ! -s $out/scores_$name.json ]]; then
    echo "== calibrate and score $name"
    "$cli" calibrate "${set[@]}" --model "$out/$name.pt" --images "$data/val/images" \
      --truth "$data/val/truth" --clicks "$data/val/clicks.jsonl" "$@" >"$out/calibration_$name.json"
    local rule
    rule=$("$PYTHON" -c 'import json,sys; b=json.load(open(sys.argv[1]))["best"]; print(" ".join(f"--set aggregator.{k}={v}" for k,v in b.items() if k!="dice"))' "$out/calibration_$name.json")
    local infer_steps=()
    [[ " $* " == *" --steps "* ]] && infer_steps=(--steps "$(sed -E 's/.*--steps ([0-9]+).*/\1/' <<<"$*")")
    # shellcheck disable=SC2086  # rule is a list of --set options
    "$cli" infer "${set[@]}" --model "$out/$name.pt" --images "$data/test/images" \
      --out "$out/pred_$name" "${infer_steps[@]}" $rule >"$out/infer_$name.json"
    "$cli" eval --pred "$out/pred_$name" --truth "$data/test/truth" >"$out/scores_$name.json"
  fi
}

run d3pm d3pm "$steps" --samples 32
# The same d3pm model sampled with every one of its T=200 steps (the paper's procedure).
if [[ ! -s $out/scores_d3pm_T200.json ]]; then
  cp "$out/d3pm.pt" "$out/d3pm_T200.pt"
  cp "$out/train_d3pm.json" "$out/train_d3pm_T200.json"
fi
run d3pm_T200 d3pm "$steps" --samples 16 --steps 200
run gaussian gaussian_x0 "$steps" --samples 32
# Its "samples" are draws from its per-pixel class distribution: with 32 the calibrated vote
# threshold is a threshold on its probabilities, so the baseline gets its best decision rule too.
for s in $unet_steps; do run "unet_$s" unet "$s" --samples 32; done

"$PYTHON" - "$out" <<'PY'
import json, os, sys
out = sys.argv[1]
rows = [n[len("scores_"):-len(".json")] for n in sorted(os.listdir(out)) if n.startswith("scores_")]
load = lambda p: json.load(open(os.path.join(out, p)))
print(f"{'model':14}{'train':>7}{'evals/sample':>14}{'rule':>10}{'val Dice':>10}{'test Dice':>11}{'test HD95':>11}  Dice vs N (validation)")
disk = None
for r in rows:
    cal, score, train = load(f"calibration_{r}.json"), load(f"scores_{r}.json"), load(f"train_{r}.json")
    disk = disk or cal.get("best_click_disk")
    curve = " ".join(f"{p['samples']}:{p['dice']:.3f}" for p in cal["dice_vs_samples"])
    print(f"{r:14}{train['steps']:>7}{cal['network_evaluations_per_sample']:>14}{cal['best']['rule']:>10}"
          f"{cal['best']['dice']:>10.3f}{score['mean']['dice']:>11.3f}{score['mean']['hd95']:>11.1f}  {curve}")
if disk:
    print(f"best fixed-radius click disk on validation: Dice {disk['dice']:.3f} at radius {disk['radius']} px")
PY
