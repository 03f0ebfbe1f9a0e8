#!/usr/bin/env bash
# ops/experiments/teacher_student.sh — teacher-student on vs off on the same stream and budget:
# the learning loop of the demo (ops/lib/loop.sh) runs four times, everything else equal:
#   teacher  the default (teacher.mode=ema): the moving average of the student is served and
#            pseudo-labels unclicked images for the student;
#   twin     teacher.mode=twin: the average is served; a co-trained twin labels for the student
#            and the student for the twin (cross pseudo-supervision);
#   ema      the average is served but labels nothing (teacher.images_per_round=0);
#   off      no teacher: the student is served (teacher.enabled=false);
# and prints the Dice of never-clicked and clicked images at the last model version of each.
#
#   ops/experiments/teacher_student.sh [OUT]   (default OUT: out/teacher_student)
#   CLICKDIFF_EXP_PRESET   the CMake preset whose build runs (default release)
#   CLICKDIFF_EXP_IMAGES   images streamed (default 64); CLICKDIFF_EXP_CLICKED clicked (default 48)
#   CLICKDIFF_EXP_ROUNDS   click rounds (default 4)
#   CLICKDIFF_EXP_VARIANTS the variants run, in order (default "teacher twin ema off")
# All runs use the demo's LOOP_SETTINGS (ops/lib/loop.sh); extra clickdiffd settings for all:
# CLICKDIFF_EXP_SET="--set trainer.steps_per_click=8"
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=ops/lib/service.sh
source ops/lib/service.sh
# shellcheck source=ops/lib/loop.sh
source ops/lib/loop.sh
out=${1:-out/teacher_student}
preset=${CLICKDIFF_EXP_PRESET:-release}
images=${CLICKDIFF_EXP_IMAGES:-64}
clicked=${CLICKDIFF_EXP_CLICKED:-48}
rounds=${CLICKDIFF_EXP_ROUNDS:-4}
read -r -a extra <<<"${CLICKDIFF_EXP_SET:-}"
read -r -a order <<<"${CLICKDIFF_EXP_VARIANTS:-teacher twin ema off}"
# The programs reject CLICKDIFF_* variables that are not config keys: these are the script's.
unset CLICKDIFF_EXP_PRESET CLICKDIFF_EXP_IMAGES CLICKDIFF_EXP_CLICKED CLICKDIFF_EXP_ROUNDS \
  CLICKDIFF_EXP_SET CLICKDIFF_EXP_VARIANTS
cmake --preset "$preset" >/dev/null
cmake --build --preset "$preset" --target clickdiff clickdiffd >/dev/null
declare -A variants=([teacher]="" [twin]="--set teacher.mode=twin"
  [ema]="--set teacher.images_per_round=0" [off]="--set teacher.enabled=false")
for variant in "${order[@]}"; do
  echo "== $variant ${variants[$variant]}"
  read -r -a settings <<<"${variants[$variant]}"
  run_learning_loop "$out/$variant" "$preset" "$images" "$clicked" "$rounds" \
    "${LOOP_SETTINGS[@]}" "${extra[@]}" "${settings[@]}"
done
python3 - "$out" "${order[@]}" <<'PY'
import json, sys
fmt = lambda x: "-" if x is None else f"{x:.3f}"
for variant in sys.argv[2:]:
    versions = json.load(open(f"{sys.argv[1]}/{variant}/stats.json"))["versions"]
    full = max(v["images"] for v in versions)
    last = [v for v in versions if v["images"] == full][-1]
    print(f"{variant:8}: version {last['model_version']}, {last['clicks_seen']} clicks: "
          f"never-clicked Dice {fmt(last['unclicked_dice'])} ({last['unclicked_images']} images), "
          f"clicked {fmt(last['clicked_dice'])} ({last['clicked_images']}), "
          f"all {last['mean_dice']:.3f}")
PY
