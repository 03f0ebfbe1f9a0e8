#!/usr/bin/env bash
# ops/demo.sh — the main job on the embedded default configuration (config/default.yaml).
#
# Runs every stage that exists today, on real components, printing only what it measured:
#   1. install what is missing (ops/setup.sh) and build the release preset;
#   2. `clickdiff info`: LibTorch, BLAS, threads, devices, a measured matmul speed;
#   3. a generated data set (organ-like shapes on textured backgrounds, one click per organ):
#      train the default model from the clicks alone for CLICKDIFF_DEMO_STEPS steps (default
#      1500; a step budget, not seconds, so the result does not depend on the machine's speed),
#      calibrate its aggregation rule on validation images, segment unseen test images, score them.
#   4. the streaming service: clickdiffd in embedded mode (its own Kafka-protocol broker, RocksDB
#      under out/demo/var/, ZeroMQ on loopback) serves the trained model; `clickdiff produce`
#      streams the test images and clicks to it, `clickdiff subscribe` receives the masks, and they
#      are scored like the offline ones.
# Outputs go under out/demo/: data/, model.pt, calibration.json, pred/ (masks, uncertainty/),
# scores.json, var/ (the service's database and log), stream/ (masks received over ZeroMQ).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=ops/lib/service.sh
source ops/lib/service.sh
ops/setup.sh
cmake --preset release >/dev/null
cmake --build --preset release --parallel "$(nproc)" --target clickdiff clickdiffd
cli=build/release/services/clickdiff
out=out/demo
steps=${CLICKDIFF_DEMO_STEPS:-1500}
# The programs reject CLICKDIFF_* variables that are not config keys: this one is the script's.
unset CLICKDIFF_DEMO_STEPS
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

echo "== train from clicks only (${steps} steps)"
"$cli" train --config "$config" --images "$out/data/train/images" \
  --clicks "$out/data/train/clicks.jsonl" --out "$out/model.pt" --steps "$steps"

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

echo "== streaming: clickdiffd serves the model; test images and clicks go in over Kafka"
daemon=build/release/services/clickdiffd
service=(--config "$config" --set "store.path=$out/var/db")
rm -rf "${out:?}/var" "${out:?}/stream"
mkdir -p "$out/var"
# It serves the offline model unchanged (trainer.continuous=false), so its masks compare with the
# offline ones above.
# shellcheck disable=SC2086  # rule_args is a list of --set options
"$daemon" "${service[@]}" --set "model.checkpoint=$out/model.pt" --set trainer.continuous=false \
  $rule_args 2>"$out/var/clickdiffd.log" &
daemon_pid=$!
trap 'kill $daemon_pid 2>/dev/null || true' EXIT
wait_for_service "$out/var" "$daemon_pid"
"$cli" subscribe "${service[@]}" --out "$out/stream" --timeout 60 >"$out/stream.jsonl" &
subscriber_pid=$!
"$cli" produce "${service[@]}" --images "$out/data/test/images" \
  --clicks "$out/data/test/clicks.jsonl" --dataset demo
wait $subscriber_pid
kill -TERM $daemon_pid
wait $daemon_pid
trap - EXIT
"$cli" eval --pred "$out/stream/demo" --truth "$out/data/test/truth" >"$out/stream_scores.json"
python3 - "$out/stream.jsonl" "$out/stream_scores.json" <<'PY'
import json, sys
masks = [json.loads(line) for line in open(sys.argv[1])]
m = json.load(open(sys.argv[2]))["mean"]
latency = sorted(x["latency_ms"] for x in masks)
print(f"streamed: {len(masks)} masks received over ZeroMQ for "
      f"{len({x['image_id'] for x in masks})} images, model version "
      f"{max(x['model_version'] for x in masks)}; median latency {latency[len(latency) // 2] / 1000:.1f} s "
      f"(request to publish, queueing included); Dice {m['dice']:.3f} IoU {m['iou']:.3f}")
PY
echo "service log: $out/var/clickdiffd.log  streamed masks: $out/stream/demo/"
