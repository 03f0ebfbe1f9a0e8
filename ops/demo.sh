#!/usr/bin/env bash
# ops/demo.sh — the main job on the embedded default configuration (config/default.yaml).
#
# Runs every stage that exists today, on real components, printing only what it measured:
#   1. install what is missing (ops/setup.sh) and build the release preset;
#   2. `clickdiff info`: LibTorch, BLAS, threads, devices, a measured matmul speed;
#   3. a generated data set (organ-like shapes on textured backgrounds, one click per organ):
#      train the default model from the clicks alone for CLICKDIFF_DEMO_SECONDS (default 240),
#      calibrate its aggregation rule on validation images, segment unseen test images, score them.
# The streaming service (Kafka -> flow graph -> ZeroMQ) joins this script when it exists.
# Outputs go under out/demo/: data/, model.pt, calibration.json, pred/ (masks, uncertainty/),
# scores.json.
set -euo pipefail
cd "$(dirname "$0")/.."
ops/setup.sh
cmake --preset release >/dev/null
cmake --build --preset release --parallel "$(nproc)" --target clickdiff
cli=build/release/services/clickdiff
out=out/demo
seconds=${CLICKDIFF_DEMO_SECONDS:-240}
config=config/default.yaml
mkdir -p "$out"

echo "== clickdiff info"
"$cli" info --config "$config"

echo "== configuration"
"$cli" config check "$config"

echo "== generated data: 96 train, 16 validation, 24 test images (96x96, one click per organ)"
"$cli" generate --out "$out/data/train" --count 96 --seed 1 >/dev/null
"$cli" generate --out "$out/data/val" --count 16 --seed 2 >/dev/null
"$cli" generate --out "$out/data/test" --count 24 --seed 3 >/dev/null

echo "== train from clicks only (${seconds} s)"
"$cli" train --config "$config" --images "$out/data/train/images" \
  --clicks "$out/data/train/clicks.jsonl" --out "$out/model.pt" --seconds "$seconds"

echo "== calibrate the aggregation rule on the validation images"
"$cli" calibrate --config "$config" --model "$out/model.pt" --images "$out/data/val/images" \
  --truth "$out/data/val/truth" --clicks "$out/data/val/clicks.jsonl" --samples 16 \
  >"$out/calibration.json"
rule_args=$(python3 - "$out/calibration.json" <<'PY'
import json, sys
best = json.load(open(sys.argv[1]))["best"]
print(" ".join(f"--set aggregator.{k}={v}" for k, v in best.items() if k != "dice"))
PY
)

echo "== segment the unseen test images ($rule_args)"
# shellcheck disable=SC2086  # rule_args is a list of --set options
"$cli" infer --config "$config" --model "$out/model.pt" --images "$out/data/test/images" \
  --out "$out/pred" $rule_args

echo "== scores on the test images"
"$cli" eval --pred "$out/pred" --truth "$out/data/test/truth" >"$out/scores.json"
python3 - "$out/calibration.json" "$out/scores.json" <<'PY'
import json, sys
cal, scores = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
m = scores["mean"]
disk = cal.get("best_click_disk", {})
print(f"test Dice {m['dice']:.3f}  IoU {m['iou']:.3f}  HD95 {m['hd95']:.1f} px  "
      f"({scores['images']} images; validation: best click-disk baseline Dice "
      f"{disk.get('dice', float('nan')):.3f} at radius {disk.get('radius')} px)")
PY
echo "masks: $out/pred/  uncertainty: $out/pred/uncertainty/  scores: $out/scores.json"
