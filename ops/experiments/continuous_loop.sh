#!/usr/bin/env bash
# ops/experiments/continuous_loop.sh — the learning loop end to end: clickdiffd (embedded broker,
# continuous training, no checkpoint) receives a generated set with one click per organ over
# Kafka; every minute the latest mask of each image (from `clickdiff subscribe --out`) is scored
# against the truth and printed with the model versions it came from.
#
#   ops/experiments/continuous_loop.sh [OUT]   (default OUT: out/loop)
#   CLICKDIFF_EXP_PRESET    the CMake preset whose build runs (default release)
#   CLICKDIFF_EXP_IMAGES    generated images streamed in (default 24)
#   CLICKDIFF_EXP_MINUTES   how long the service runs (default 10)
# Extra clickdiffd settings: CLICKDIFF_EXP_SET="--set trainer.snapshot_seconds=45 ..."
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=ops/lib/service.sh
source ops/lib/service.sh
out=${1:-out/loop}
preset=${CLICKDIFF_EXP_PRESET:-release}
images=${CLICKDIFF_EXP_IMAGES:-24}
minutes=${CLICKDIFF_EXP_MINUTES:-10}
read -r -a extra <<<"${CLICKDIFF_EXP_SET:-}"
# The programs reject CLICKDIFF_* variables that are not config keys: these are the script's.
unset CLICKDIFF_EXP_PRESET CLICKDIFF_EXP_IMAGES CLICKDIFF_EXP_MINUTES CLICKDIFF_EXP_SET
cmake --preset "$preset" >/dev/null
cmake --build --preset "$preset" --target clickdiff clickdiffd >/dev/null
cli=build/$preset/services/clickdiff
rm -rf "$out" && mkdir -p "$out/var"
"$cli" generate --out "$out/data" --count "$images" --seed 5 >/dev/null
service=(--config config/default.yaml --set "store.path=$out/var/db")
"build/$preset/services/clickdiffd" "${service[@]}" "${extra[@]}" 2>"$out/var/clickdiffd.log" &
daemon=$!
trap 'kill $daemon 2>/dev/null || true' EXIT
wait_for_service "$out/var" "$daemon"
"$cli" subscribe "${service[@]}" --out "$out/stream" >"$out/stream.jsonl" 2>/dev/null &
subscriber=$!
"$cli" produce "${service[@]}" --images "$out/data/images" --clicks "$out/data/clicks.jsonl" \
  --dataset loop >/dev/null
for minute in $(seq "$minutes"); do
  sleep 60
  masks=$(find "$out/stream/loop" -maxdepth 1 -name '*.png' 2>/dev/null | wc -l)
  dice=na
  if [[ $masks -eq $images ]]; then
    dice=$("$cli" eval --pred "$out/stream/loop" --truth "$out/data/truth" |
      python3 -c 'import json,sys; print("%.3f" % json.load(sys.stdin)["mean"]["dice"])')
  fi
  versions=$(python3 -c 'import json,sys
latest = {}
for line in open(sys.argv[1]):
    m = json.loads(line)
    latest[m["image_id"]] = m["model_version"]
print(f"{min(latest.values())}-{max(latest.values())}" if latest else "none")' "$out/stream.jsonl")
  echo "minute $minute: masks for $masks of $images images, model versions $versions, Dice $dice"
done
kill $subscriber 2>/dev/null || true
kill -TERM $daemon
wait $daemon
trap - EXIT
