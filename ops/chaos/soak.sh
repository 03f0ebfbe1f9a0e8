#!/usr/bin/env bash
# ops/chaos/soak.sh — the kill -9 soak (issue 13): a stream of images, clicks and labels, about 5%
# of them bad, goes into a broker that outlives the service (`clickdiff broker`) while clickdiffd
# (external mode, training on) is SIGKILLed at random moments and restarted, SOAK_KILLS times.
# Then it lets the service finish the stream and checks, from the outside:
#   - stored: the service's STATUS (its counters start from RocksDB's records at each start) holds
#     every good image, click and label sent, no more (nothing lost, nothing applied twice);
#   - dead letters: every .dlq topic holds each bad event (matched by payload, counted by source
#     offset) and no good event; a letter sent again (the outbox delivers at least once: a kill
#     between the broker's acknowledgement and the outbox's delete) is counted, not failed;
#   - model-updates: versions increasing, one record each (repeats of the same bytes counted),
#     none counting more clicks than were sent;
#   - the broker deleted none of the input (its ~5 MB a partition retention).
# Prints the figures (ops/chaos/soak.py check) and exits 1 on any problem.
#
#   ops/chaos/soak.sh [OUT]   (default OUT: out/soak; made anew)
# Settings (environment):
#   SOAK_IMAGES   good images (default 6400); each has one click and one training label, so the
#                 stream holds 3 x SOAK_IMAGES good events, 20,000 with the bad ones by default
#   SOAK_BAD      bad events (default SOAK_IMAGES x 3 / 19: 5% of the stream), 13 kinds in turn
#   SOAK_KILLS    SIGKILLs (default 20), each 1-8 s (random) after the run starts consuming
#   SOAK_RATE     events per second the producer sends (default 60: the stream lasts through the
#                 kills, about 6 minutes for the default stream)
#   SOAK_SEED     seed of the images, the bad events and the kill times (default 1)
#   SOAK_PRESET   the CMake preset whose build runs (default release)
#   SOAK_DRAIN_S  how long the last run may take to finish the stream (default 900)
#   SOAK_BROKERS  brokers in the cluster (default 1)
#   SOAK_FAULTS   a plan of broker faults (`clickdiff broker --faults`, times from the broker's
#                 start; ops/chaos/faults.sh passes ops/chaos/faults.yaml); the check waits for
#                 the plan to end. With SOAK_KILLS=0 the service's progress is polled every second
#                 from its start (SOAK_DRAIN_S then counts from there), and the stalls (no event
#                 stored for over 3 s before the stream was done) are printed against the
#                 broker's clock, to be read beside the plan
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=ops/lib/common.sh
source ops/lib/common.sh
out=${1:-out/soak}
images=${SOAK_IMAGES:-6400}
bad=${SOAK_BAD:-$((images * 3 / 19))}
kills=${SOAK_KILLS:-20}
rate=${SOAK_RATE:-60}
seed=${SOAK_SEED:-1}
preset=${SOAK_PRESET:-release}
drain_s=${SOAK_DRAIN_S:-900}
brokers=${SOAK_BROKERS:-1}
faults=${SOAK_FAULTS:-}
size=32
for n in "$images" "$bad" "$kills" "$rate" "$seed" "$drain_s" "$brokers"; do
  [[ $n =~ ^[0-9]+$ ]] || die "SOAK_* settings are whole numbers, got '$n'"
done
((images > 0)) || die "SOAK_IMAGES must be at least 1"
[[ -z $faults || -f $faults ]] || die "SOAK_FAULTS: no plan at '$faults'"

require_commands kcat protoc
require_python_modules zmq google.protobuf
build_cli "$preset"
cmake --build --preset "$preset" --target clickdiffd >/dev/null
DAEMON=build/$preset/services/clickdiffd
RANDOM=$seed

rm -rf "$out"
mkdir -p "$out/var"
var=$out/var
echo "soak: $images images (+ a click and a label each), $bad bad events, $kills kills${faults:+," broker faults from $faults"}"
"$CLI" generate --out "$out/data" --count "$images" --size "$size" --seed "$seed" >/dev/null
"$PYTHON" ops/chaos/soak.py bad "$out/bad" --images "$out/data/images" --dataset soak \
  --size "$size" --count "$bad" --seed "$seed"

# The broker outlives every run of the service, as a real cluster would. Four partitions a topic:
# the mock broker keeps about 5 MB a partition and deletes older records (the check says if it
# did), and a key's image, click and label share a partition number, as in production.
broker_args=(--partitions 4 --brokers "$brokers")
[[ -n $faults ]] && broker_args+=(--faults "$faults")
broker_start=$(date +%s.%N)  # the plan's clock
start_broker "$out/broker.log" "${broker_args[@]}"
bootstrap=$BOOTSTRAP

# A small model, so that the stream (every image gets a mask, and a new one for each click) goes
# through in minutes on 2 cores; training stays on, with the shipped version cadence.
cat >"$out/clickdiffd.yaml" <<EOF
mode: external
kafka:
  bootstrap_servers: "$bootstrap"
  group_id: soak
store:
  path: $var/store
model:
  resolution: 32
  levels: 2
  base_channels: 8
  encoder_channels: 8
  d3pm:
    steps: 20
sampler:
  samples: 4
  steps: 2
compute:
  torch_threads: 1
EOF

service=
start_service() {
  rm -f "$var/clickdiffd.json"  # a killed run leaves its runtime file behind
  "$DAEMON" --config "$out/clickdiffd.yaml" >>"$var/clickdiffd.log" 2>&1 &
  service=$!
  track_pid "$service" clickdiffd
  wait_for_service "$var" "$service"
}

start_service
# Good events through the CLI producer (images, then labels, then clicks), bad ones through kcat,
# an outside client, one file a message, while the service is being killed.
"$CLI" produce --bootstrap "$bootstrap" --dataset soak --images "$out/data/images" \
  --labels "$out/data/truth" --clicks "$out/data/clicks.jsonl" --rate "$rate" \
  >"$out/produce.log" 2>&1 &
producer=$!
track_pid "$producer" producer
for topic in images clicks labels; do
  [[ -d $out/bad/$topic ]] || continue  # a small SOAK_BAD may leave a topic none
  files=("$out/bad/$topic"/*)
  kcat -P -b "$bootstrap" -t "$topic" -k soak/bad "${files[@]}"
done

# Each kill lands 1-8 s after the run started consuming (a restarted instance waits for the broker
# to let the killed one's partitions go), so it hits the service at work, not waiting to join;
# once the stream is all read ("-": nothing within 30 s), it hits training and version writes.
start=$SECONDS
resumed=$("$PYTHON" ops/chaos/soak.py consuming "$var/clickdiffd.json" --timeout 30)
# Until the stream is stored (or the drain time runs out: the check then says what is missing),
# in the background and waited for, so that a signal to the script stops it at once. Without
# kills it polls from now, every second, and prints the stalls; a killed service cannot answer,
# so with kills it starts once the producer is done.
want=$(grep -c . "$out/data/clicks.jsonl")
expect="{\"images\": $images, \"clicks\": $want, \"labels\": $images}"
poll=
poll_stored() {
  "$PYTHON" ops/chaos/soak.py stored "$var/clickdiffd.json" --expect "$expect" \
    --timeout "$drain_s" "$@" >"$out/status.json" &
  poll=$!
  track_pid "$poll" "status poll"
}
((kills > 0)) || poll_stored --every 1 --clock-start "$broker_start"
for ((k = 1; k <= kills; k++)); do
  sleep_for "$((1 + RANDOM % 8)).$((RANDOM % 10))"
  # A service that stopped by itself is what the soak looks for: say so, with its log.
  if ! kill -KILL "$service" 2>/dev/null; then
    status=0
    wait "$service" || status=$?
    tail -20 "$var/clickdiffd.log" >&2
    die "clickdiffd exited by itself (status $status) before kill $k"
  fi
  wait "$service" 2>/dev/null || true
  unset "_OPS_TRACKED[$service]"
  t=$SECONDS
  start_service
  ready=$((SECONDS - t))
  resumed=$("$PYTHON" ops/chaos/soak.py consuming "$var/clickdiffd.json" --timeout 30)
  printf 'kill %2d at %4d s: ready again after %d s, consuming again %s s after that\n' "$k" \
    "$((t - start))" "$ready" "$resumed"
done
wait "$producer" || die "the producer failed: $(tail -3 "$out/produce.log")"
unset "_OPS_TRACKED[$producer]"

# The whole stream, then the dead letters.
[[ -n $poll ]] || poll_stored
wait "$poll"
unset "_OPS_TRACKED[$poll]"
status=$(<"$out/status.json")
sleep_for 15  # the last dead letters leave the outbox
echo "soak: $kills kills, the stream finished $((SECONDS - start)) s after the first start"
if [[ -n $faults ]]; then
  # The check reads the topics: not while a fault is still on (a short stream ends before the plan).
  for ((t = 0; t < drain_s; t++)); do
    grep -q 'broker faults: the plan is over' "$out/broker.log" && break
    sleep_for 1
  done
  grep -h 'broker faults: at' "$out/broker.log" | sed 's/^.*broker faults: /  fault /' ||
    echo "  (no fault of the plan was applied)"
fi
stop_pid "$service" || die "clickdiffd did not stop cleanly ($var/clickdiffd.log)"
"$PYTHON" ops/chaos/soak.py check --bootstrap "$bootstrap" --bad "$out/bad" --expect "$expect" \
  --status "$status" ${faults:+--faults}
