# shellcheck shell=bash
# ops/lib/loop.sh — the learning loop on a generated stream, sourced by ops/demo.sh,
# ops/experiments/teacher_student.sh and ops/bench/cpu_split.sh (it sources ops/lib/common.sh).
#
# run_learning_loop OUT PRESET IMAGES CLICKED ROUNDS [--set key=value ...]
#   Generates IMAGES images (seed 1) under OUT/data, starts clickdiffd (embedded broker, RocksDB
#   under OUT/var, no model: it learns from scratch) with the extra --set options, subscribes to
#   every mask version (OUT/stream, OUT/stream.jsonl), and streams: every image with its ground
#   truth marked for evaluation, then the clicks of the first CLICKED images in ROUNDS rounds (the
#   other images are never clicked). Each round starts when the model version that has seen every
#   click sent so far has a mask scored for every image (after LOOP_WAIT_S seconds, default 900,
#   it says so on stderr and goes on). Writes OUT/clicked.jsonl (the clicks sent), OUT/rounds.txt (seconds per round) and
#   OUT/stats.json and OUT/stats.txt (`clickdiff stats`), stops the service and returns.
#   The service and the subscriber are registered with track_pid (ops/lib/common.sh): if the
#   script fails or is interrupted halfway, its exit trap stops them. Runs $PYTHON (stdlib only).
# The settings the demo and ops/experiments/teacher_student.sh run the loop with, on top of
# config/default.yaml: the model switched to gaussian_x0 (4 network evaluations per sample instead
# of d3pm's 50: every new version redraws every mask, which on 2 CPU cores sets the pace), its
# aggregation rule (density threshold 0.5) and its step budget (4 steps per click:
# gaussian_x0 overfits a few dozen clicks beyond that; the default 16 is d3pm's offline regime,
# 1500 steps for 96 images).
# shellcheck source=ops/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

# shellcheck disable=SC2034  # used by the scripts that source this file
LOOP_SETTINGS=(--set model.method=gaussian_x0 --set sampler.steps=0
  --set aggregator.density_threshold=0.5 --set trainer.steps_per_click=4)

run_learning_loop() {
  local out=$1 preset=$2 images=$3 clicked=$4 rounds=$5
  shift 5
  local cli=build/$preset/services/clickdiff wait_s=${LOOP_WAIT_S:-900}
  rm -rf "${out:?}" && mkdir -p "$out/var"
  "$cli" generate --out "$out/data" --count "$images" --seed 1 >/dev/null
  "$PYTHON" - "$out/data/clicks.jsonl" "$out" "$clicked" "$rounds" <<'PY'
import json, sys
source, out, clicked, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
clicks = [json.loads(line) for line in open(source)]
names = sorted({c["image"] for c in clicks})[:clicked]
per_round = -(-len(names) // rounds)
with open(f"{out}/clicked.jsonl", "w") as every:
    for r in range(rounds):
        chosen = set(names[r * per_round:(r + 1) * per_round])
        with open(f"{out}/round{r + 1}.jsonl", "w") as f:
            for c in clicks:
                if c["image"] in chosen:
                    f.write(json.dumps(c) + "\n")
                    every.write(json.dumps(c) + "\n")
PY
  local service=(--config config/default.yaml --set "store.path=$out/var/db" "$@")
  "build/$preset/services/clickdiffd" "${service[@]}" 2>"$out/var/clickdiffd.log" &
  local daemon=$!
  track_pid "$daemon" clickdiffd
  wait_for_service "$out/var" "$daemon"
  "$cli" subscribe "${service[@]}" --out "$out/stream" --versions >"$out/stream.jsonl" 2>/dev/null &
  local subscriber=$!
  track_pid "$subscriber" "clickdiff subscribe"
  "$cli" produce "${service[@]}" --images "$out/data/images" --labels "$out/data/truth" \
    --for-evaluation --dataset loop >/dev/null
  local sent=0 round start
  : >"$out/rounds.txt"
  for round in $(seq 0 "$rounds"); do
    start=$SECONDS
    if ((round > 0)); then
      "$cli" produce "${service[@]}" --clicks "$out/round$round.jsonl" --dataset loop >/dev/null
      sent=$((sent + $(wc -l <"$out/round$round.jsonl")))
    fi
    while true; do
      "$cli" stats "${service[@]}" --dataset loop --json >"$out/stats.json" 2>/dev/null || true
      "$PYTHON" - "$out/stats.json" "$sent" "$images" <<'PY' && break
import json, sys
try:
    versions = json.load(open(sys.argv[1]))["versions"]
except (OSError, ValueError, KeyError):
    sys.exit(1)
sent, images = int(sys.argv[2]), int(sys.argv[3])
sys.exit(0 if any(v["clicks_seen"] >= sent and v["images"] >= images for v in versions) else 1)
PY
      if ((SECONDS - start >= wait_s)); then
        echo "round $round: no fully scored version after $wait_s s; going on" >&2
        break
      fi
      kill -0 "$daemon" 2>/dev/null || { cat "$out/var/clickdiffd.log"; exit 1; }
      sleep_for 5
    done
    echo "round $round: $sent clicks sent, $((SECONDS - start)) s" | tee -a "$out/rounds.txt"
  done
  "$cli" stats "${service[@]}" --dataset loop --json >"$out/stats.json"
  "$cli" stats "${service[@]}" --dataset loop >"$out/stats.txt"
  stop_pid "$subscriber" || true
  stop_pid "$daemon"
}
