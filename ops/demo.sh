#!/usr/bin/env bash
# ops/demo.sh — the main job: the learning loop on the embedded default configuration.
#
#   1. install what is missing (ops/setup.sh) and build the release preset;
#   2. `clickdiff info`: LibTorch, BLAS, threads, devices;
#   3. clickdiffd in embedded mode (its own Kafka-protocol broker, RocksDB under out/demo/var/,
#      ZeroMQ on loopback) with NO trained model: it learns from the clicks it receives. A
#      generated set of 64 images (organ-like shapes on textured backgrounds) is streamed with each
#      image's ground truth marked for evaluation; then the clicks of 48 images arrive in 4 rounds
#      (one click per organ), and 16 images are never clicked. The service retrains as clicks
#      arrive (teacher-student pseudo-labels for the unclicked images), publishes every new mask
#      over ZeroMQ (`clickdiff subscribe` keeps each version) and scores it (`clickdiff stats`).
#   4. pictures: out/demo/figures/learning_curve.png (Dice of the published masks against clicks
#      received, per model version) and overlays.png (images, masks at successive versions,
#      clicks, uncertainty), and a one-line summary.
# The service runs config/default.yaml with LOOP_SETTINGS (ops/lib/loop.sh: gaussian_x0).
# Settings (environment):
#   DEMO_SET     extra clickdiffd settings, e.g. DEMO_SET="--set teacher.enabled=false ..."
#   LOOP_WAIT_S  the most seconds a round waits for its fully scored version (default 900)
# Python runs on /usr/bin/python3 (ops/lib/common.sh), checked for numpy, matplotlib and PIL before
# the build; clickdiffd and the subscriber are stopped on any exit, Ctrl-C included.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=ops/lib/common.sh
source ops/lib/common.sh
# shellcheck source=ops/lib/loop.sh
source ops/lib/loop.sh
read -r -a extra <<<"${DEMO_SET:-}"
ops/setup.sh
require_python_modules numpy matplotlib PIL
cmake --preset release >/dev/null
cmake --build --preset release --parallel "$(nproc)" --target clickdiff clickdiffd
cli=build/release/services/clickdiff
out=out/demo

echo "== clickdiff info"
"$cli" info --config config/default.yaml

echo "== the learning loop: 64 images streamed, clicks on 48 of them in 4 rounds"
start=$SECONDS
run_learning_loop "$out" release 64 48 4 "${LOOP_SETTINGS[@]}" "${extra[@]}"

echo "== learning curve (clickdiff stats, before the service stopped)"
cat "$out/stats.txt"

echo "== pictures"
"$PYTHON" ops/lib/demo_figures.py --data "$out/data" --stream "$out/stream" --dataset loop \
  --stats "$out/stats.json" --clicked "$out/clicked.jsonl" --out "$out/figures"
"$PYTHON" - "$out/stats.json" "$((SECONDS - start))" <<'PY'
import json, sys
versions = [v for v in json.load(open(sys.argv[1]))["versions"] if v["images"] > 0]
full = max(v["images"] for v in versions)
first, last = versions[0], [v for v in versions if v["images"] == full][-1]
unclicked = last["unclicked_dice"]
print(f"summary: Dice of the masks of all {full} images rose from {first['mean_dice']:.3f} "
      f"(model version {first['model_version']}, {first['clicks_seen']} clicks) to "
      f"{last['mean_dice']:.3f} (version {last['model_version']}, {last['clicks_seen']} clicks); "
      f"never-clicked images {'-' if unclicked is None else f'{unclicked:.3f}'}; "
      f"{len(versions)} versions in {sys.argv[2]} s")
PY
echo "outputs: $out/figures/  masks per version: $out/stream/loop/versions/  log: $out/var/clickdiffd.log"
