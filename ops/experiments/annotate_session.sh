#!/usr/bin/env bash
# ops/experiments/annotate_session.sh — the annotator's session, the product's acceptance test: a
# simulated annotator (`clickdiff annotate`, the NoC protocol of services/annotator.h) streams
# images one by one into a fresh clickdiffd and clicks each structure until its mask reaches the
# target Dice, through Kafka and ZeroMQ only. Two arms on the same stream, everything else equal:
#   learn   the default service: it trains on every click; after a click the annotator waits (up to
#           EXP_LEARN_WAIT s) for the mask of a version trained on it;
#   frozen  learning off (trainer.continuous=false): the starting model serves throughout and the
#           annotator takes the first mask that reflects each click;
# then prints per arm and seed the clicks per image (all, images 51-100), the images that reached
# the target, first-click Dice over the stream, the click -> mask latency (p50), the ratio of total
# clicks learn / frozen, and per version the fresh first-click hit rate beside Dice (learn arm),
# and draws OUT/session.png (clicks per image and first-click Dice against the place in the stream,
# both arms; hit rate and Dice per version).
#
#   ops/experiments/annotate_session.sh [OUT]   (default OUT: out/annotate_session)
# Settings (environment):
#   EXP_PRESET      the CMake preset whose build runs (default release)
#   EXP_DATA        generated (single-organ images, `clickdiff generate --seed S`) | acdc (the test
#                   split, every EXP_ACDC_EVERY-th slice, 4 classes, per structure; default generated)
#   EXP_IMAGES      images in the stream (default 100)
#   EXP_SEEDS       seeds, each a run of both arms: the generated stream's and the trainer's
#                   (default "1")
#   EXP_MAX_CLICKS  most clicks per structure (default 20)
#   EXP_TARGET      Dice at which a structure is done (default 0.9; acdc 0.85)
#   EXP_LEARN_WAIT  learn arm: most seconds a click waits for a version trained on it (default 60)
#   EXP_ARMS        arms run, in order (default "learn frozen")
#   EXP_SAVE        which masks the annotator saves as their image's training label when it
#                   leaves the image (`annotate --save-masks`, an annotation tool's save; the
#                   service's mask, never the ground truth): reached (those that reached the
#                   target) | all (whatever it stopped at) | none (clicks only; default none)
#   EXP_SET         extra clickdiffd settings for every arm, e.g. EXP_SET="--set model.method=gaussian_x0"
#   ACDC_DATA       the ACDC folder (default ../shared/data/acdc); EXP_ACDC_EVERY (default 4)
# Needs what ops/setup.sh installs; clickdiffd is stopped on any exit, Ctrl-C included.
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=ops/lib/common.sh
source ops/lib/common.sh
out=${1:-out/annotate_session}
preset=${EXP_PRESET:-release}
data=${EXP_DATA:-generated}
images=${EXP_IMAGES:-100}
max_clicks=${EXP_MAX_CLICKS:-20}
learn_wait=${EXP_LEARN_WAIT:-60}
acdc=${ACDC_DATA:-../shared/data/acdc}
read -r -a seeds <<<"${EXP_SEEDS:-1}"
read -r -a arms <<<"${EXP_ARMS:-learn frozen}"
read -r -a extra <<<"${EXP_SET:-}"
save=()
case ${EXP_SAVE:-none} in
  reached | all) save=(--save-masks "$EXP_SAVE") ;;
  none) ;;
  *) die "EXP_SAVE: reached, all or none, not '${EXP_SAVE}'" ;;
esac
classes=()
case $data in
  generated) target=${EXP_TARGET:-0.9} ;;
  acdc)
    target=${EXP_TARGET:-0.85}
    classes=(--set model.num_classes=4 --set "model.class_names=[background,rv,myo,lv]")
    [[ -d $acdc/test/images && -d $acdc/test/truth ]] ||
      die "$acdc/test/images and truth: no such directories (ACDC_DATA names the ACDC data set)"
    ;;
  *) die "EXP_DATA: unknown data '$data' (generated or acdc)" ;;
esac
for arm in "${arms[@]}"; do
  [[ $arm == learn || $arm == frozen ]] || die "EXP_ARMS: unknown arm '$arm' (learn, frozen)"
done
require_python_modules numpy matplotlib
build_cli "$preset"
cmake --build --preset "$preset" --target clickdiffd >/dev/null

mkdir -p "$out"
for seed in "${seeds[@]}"; do
  stream=$out/seed$seed/data
  if [[ $data == generated ]]; then
    # An earlier run's stream is reused only when it has this run's length.
    if [[ $(find "$stream/images" -name '*.png' 2>/dev/null | wc -l) -ne $images ]]; then
      rm -rf "$stream"
      "$CLI" generate --out "$stream" --count "$images" --seed "$seed" >/dev/null
    fi
  else
    link_every "$acdc/test" "${EXP_ACDC_EVERY:-4}" "$stream"
  fi
  for arm in "${arms[@]}"; do
    run=$out/seed$seed/$arm
    echo "== seed $seed, $arm"
    rm -rf "$run" && mkdir -p "$run/var"
    settings=(--config config/default.yaml --set "store.path=$run/var/db"
      --set "trainer.seed=$seed" "${classes[@]}" "${extra[@]}")
    wait_s=$learn_wait
    if [[ $arm == frozen ]]; then
      settings+=(--set trainer.continuous=false)
      wait_s=0
    fi
    "build/$preset/services/clickdiffd" "${settings[@]}" 2>"$run/var/clickdiffd.log" &
    daemon=$!
    track_pid "$daemon" clickdiffd
    wait_for_service "$run/var" "$daemon"
    # A session that stops early (no mask in time) is reported and left out; the others go on.
    "$CLI" annotate "${settings[@]}" --images "$stream/images" --truth "$stream/truth" \
      --dataset session --count "$images" --max-clicks "$max_clicks" --target "$target" \
      --learn-wait "$wait_s" --evaluate "${save[@]}" >"$run/session.jsonl" ||
      echo "annotate_session.sh: seed $seed, $arm stopped early (see $run/var/clickdiffd.log)" >&2
    "$CLI" stats "${settings[@]}" --dataset session --json >"$run/stats.json"
    stop_pid "$daemon"
  done
done
"$PYTHON" ops/lib/session_figures.py "$out" "${seeds[*]}" "${arms[@]}"
