#!/usr/bin/env bash
# ops/chaos/flood.sh — the flood (issue 13): FLOOD_IMAGES small images and FLOOD_CLICKS clicks on
# each (1,000,000 events by default: 100,000 images and 900,000 clicks, each click on its image's
# object) go into a broker as fast as the producer sends them while clickdiffd (external mode, the
# shipped config: training, samplers and the teacher on) takes them in. Prints, at each tenth of
# the stream, how much is stored and the service's resident memory, then the figures; fails when
# the stream is not all stored within FLOOD_DRAIN_S, the broker deleted records before they were
# read, or the service's peak resident memory (VmHWM) passed FLOOD_LIMIT_MB.
#
#   ops/chaos/flood.sh [OUT]   (default OUT: out/flood; made anew)
# Settings (environment):
#   FLOOD_IMAGES    images, 32 x 32 generated organs (default 100000)
#   FLOOD_CLICKS    clicks per image (default 9), each on a distinct pixel of its object
#   FLOOD_LIMIT_MB  the peak resident memory allowed (default 2048)
#   FLOOD_DRAIN_S   how long the stream may take to be stored (default 7200)
#   FLOOD_PRESET    the CMake preset whose build runs (default release)
#   FLOOD_SEED      seed of the images and clicks (default 1)
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=ops/lib/common.sh
source ops/lib/common.sh
out=${1:-out/flood}
images=${FLOOD_IMAGES:-100000}
per_image=${FLOOD_CLICKS:-9}
limit_mb=${FLOOD_LIMIT_MB:-2048}
drain_s=${FLOOD_DRAIN_S:-7200}
preset=${FLOOD_PRESET:-release}
seed=${FLOOD_SEED:-1}
for n in "$images" "$per_image" "$limit_mb" "$drain_s" "$seed"; do
  [[ $n =~ ^[0-9]+$ ]] || die "FLOOD_* settings are whole numbers, got '$n'"
done
((images > 0)) || die "FLOOD_IMAGES must be at least 1"

require_python_modules zmq google.protobuf numpy PIL
build_cli "$preset"
cmake --build --preset "$preset" --target clickdiffd >/dev/null
DAEMON=build/$preset/services/clickdiffd

rm -rf "$out"
mkdir -p "$out/var"
var=$out/var
echo "flood: generating $images images and $per_image clicks on each"
"$CLI" generate --out "$out/data" --count "$images" --size 32 --seed "$seed" >/dev/null
clicks=$("$PYTHON" ops/chaos/flood.py clicks "$out/data/truth" "$out/clicks.jsonl" \
  --per-image "$per_image" --seed "$seed")

# The mock broker keeps about 5 MB and 100,000 records a partition and deletes older ones: a
# partition for every 1500 images (2.1 KB each: 3.2 MB) holds the whole stream (the watcher fails
# if the broker deleted any).
partitions=$((images / 1500 + 4))
((partitions <= 1024)) || die "FLOOD_IMAGES over 1.5 million: more partitions than the broker has"
start_broker "$out/broker.log" --partitions "$partitions"
bootstrap=$BOOTSTRAP

# The shipped config (config/default.yaml), in external mode against that broker.
cat >"$out/clickdiffd.yaml" <<EOF
mode: external
kafka:
  bootstrap_servers: "$bootstrap"
  group_id: flood
store:
  path: $var/store
EOF
"$DAEMON" --config "$out/clickdiffd.yaml" >>"$var/clickdiffd.log" 2>&1 &
service=$!
track_pid "$service" clickdiffd
wait_for_service "$var" "$service"

echo "flood: sending $images images, then $clicks clicks"
"$CLI" produce --bootstrap "$bootstrap" --dataset flood --images "$out/data/images" \
  --clicks "$out/clicks.jsonl" >"$out/produce.log" 2>&1 &
producer=$!
track_pid "$producer" producer
"$PYTHON" ops/chaos/flood.py watch "$var/clickdiffd.json" --pid "$service" \
  --expect "{\"images\": $images, \"clicks\": $clicks}" --limit-mb "$limit_mb" \
  --timeout "$drain_s" --samples "$out/resident.tsv" &
watcher=$!
track_pid "$watcher" watcher
wait "$producer" || die "the producer failed: $(tail -3 "$out/produce.log")"
unset "_OPS_TRACKED[$producer]"
status=0
wait "$watcher" || status=$?
unset "_OPS_TRACKED[$watcher]"
stop_pid "$service" || die "clickdiffd did not stop cleanly ($var/clickdiffd.log)"
echo "flood: resident memory over time in $out/resident.tsv"
exit "$status"
