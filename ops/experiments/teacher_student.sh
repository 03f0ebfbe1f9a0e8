#!/usr/bin/env bash
# ops/experiments/teacher_student.sh — teacher-student on vs off on the same stream and budget:
# the learning loop of the demo (ops/lib/loop.sh) runs four times, everything else equal:
#   teacher  the default (teacher.mode=ema): the moving average of the student is served and
#            pseudo-labels unclicked images for the student, and each clicked image's served mask
#            labels its unclicked pixels (teacher.clicked_masks);
#   twin     teacher.mode=twin: the average is served; a co-trained twin labels for the student
#            and the student for the twin (cross pseudo-supervision);
#   ema      the average is served but labels nothing (teacher.images_per_round=0, and no clicked
#            image learns from its served mask: teacher.clicked_masks=false);
#   off      no teacher: the student is served (teacher.enabled=false);
#   gate     the default with the version gate on (trainer.held_out_images=8: up to 8 of the
#            clicked images held out, no version worse on them published; learning/version_gate.h);
# and prints the Dice of never-clicked and clicked images at the last model version of each, the
# snapshots the gate refused, and per version the fresh first clicks its masks held beside its
# Dice (the no-ground-truth signal against the truth).
#
#   ops/experiments/teacher_student.sh [OUT]   (default OUT: out/teacher_student)
# Settings (environment):
#   EXP_PRESET    the CMake preset whose build runs (default release)
#   EXP_IMAGES    images streamed (default 64); EXP_CLICKED clicked (default 48)
#   EXP_ROUNDS    click rounds (default 4)
#   EXP_VARIANTS  the variants run, in order (default "teacher twin ema off"; also "gate")
#   EXP_SET       extra clickdiffd settings for all runs, e.g. EXP_SET="--set trainer.steps_per_click=8"
#   LOOP_WAIT_S   the most seconds a round waits for its fully scored version (default 900)
# All runs use the demo's LOOP_SETTINGS (ops/lib/loop.sh). Python runs on /usr/bin/python3
# (ops/lib/common.sh); clickdiffd and the subscriber are stopped on any exit, Ctrl-C included.
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=ops/lib/common.sh
source ops/lib/common.sh
# shellcheck source=ops/lib/loop.sh
source ops/lib/loop.sh
out=${1:-out/teacher_student}
preset=${EXP_PRESET:-release}
images=${EXP_IMAGES:-64}
clicked=${EXP_CLICKED:-48}
rounds=${EXP_ROUNDS:-4}
read -r -a extra <<<"${EXP_SET:-}"
read -r -a order <<<"${EXP_VARIANTS:-teacher twin ema off}"
declare -A variants=([teacher]="" [twin]="--set teacher.mode=twin"
  [ema]="--set teacher.images_per_round=0 --set teacher.clicked_masks=false"
  [off]="--set teacher.enabled=false"
  [gate]="--set trainer.held_out_images=8")
for variant in "${order[@]}"; do
  [[ -v "variants[$variant]" ]] || die "EXP_VARIANTS: unknown variant '$variant' (teacher, twin, ema, off, gate)"
done
require_commands cmake
require_python
cmake --preset "$preset" >/dev/null
cmake --build --preset "$preset" --target clickdiff clickdiffd >/dev/null
for variant in "${order[@]}"; do
  echo "== $variant ${variants[$variant]}"
  read -r -a settings <<<"${variants[$variant]}"
  run_learning_loop "$out/$variant" "$preset" "$images" "$clicked" "$rounds" \
    "${LOOP_SETTINGS[@]}" "${extra[@]}" "${settings[@]}"
done
"$PYTHON" - "$out" "${order[@]}" <<'PY'
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
    log = open(f"{sys.argv[1]}/{variant}/var/clickdiffd.log").read()
    curve = []
    for v in versions:
        first = v.get("fresh_clicks", {})
        if first.get("first_tested"):
            dice = f"{v['mean_dice']:.3f}" if v["images"] else "-"
            curve.append(f"v{v['model_version']} {first['first_hits']}/{first['first_tested']} "
                         f"(Dice {dice})")
    print(f"{'':10}snapshots refused by the gate: {log.count('is not published')}; "
          f"first clicks held per version: {', '.join(curve) or '-'}")
PY
