#!/usr/bin/env bash
# ops/experiments/masks.sh — mask quality from one click per organ on generated binary organs,
# through the product CLI only (clickdiff generate | train --save-at | calibrate): every variant in
# EXP_VARIANTS, method in EXP_METHODS and loss in EXP_LOSSES, trained on 96 images once per seed in
# EXP_SEEDS, its model saved at each length in EXP_STEPS and scored on 24 unseen images. For each
# model one set of samples is drawn and scored under the configured (uncalibrated) rule, the plain
# majority vote, the otsu rule (sigma 2, floor 0.05) and the best rule a calibration on those same test images could pick (an upper
# bound no user has: it needs their ground truth). Prints one row per variant, method, loss and
# rule: mean Dice over the seeds (and its spread, max - min) at every length. Training is counted in
# steps, so the figures do not depend on the machine's speed.
#
#   ops/experiments/masks.sh [OUT]      (default OUT: out/masks)
# Settings (environment):
#   EXP_VARIANTS  named sets of config overrides, "NAME=KEY=VALUE,KEY=VALUE NAME2=..." (default
#                 "default=": the configuration as shipped)
#   EXP_METHODS   methods (default "d3pm")
#   EXP_LOSSES    losses (default "focal")
#   EXP_SEEDS     trainer seeds (default "1 2 3")
#   EXP_STEPS     training lengths; the longest is the run (default "500 1000 2000 4000")
#   EXP_SAMPLES   samples per test image (default 16, as sampler.samples)
#   EXP_PRESET    the CMake preset whose build runs (default release; ci reuses ops/test.sh's tree)
#   EXP_DATA      gray (default) or color: RGB images whose organs also differ in hue; their data,
#                 models and scores go to OUT/color (a variant's model.color decides what its
#                 model takes)
# Models and scores already in OUT are reused (delete them to redo a cell).
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=ops/lib/common.sh
source ops/lib/common.sh
out=${1:-out/masks}
read -r -a variants <<<"${EXP_VARIANTS:-default=}"
methods=${EXP_METHODS:-d3pm}
losses=${EXP_LOSSES:-focal}
seeds=${EXP_SEEDS:-"1 2 3"}
steps=${EXP_STEPS:-"500 1000 2000 4000"}
samples=${EXP_SAMPLES:-16}
preset=${EXP_PRESET:-release}
require_python
build_cli "$preset"
cli=$CLI
mkdir -p "$out"
case ${EXP_DATA:-gray} in
  gray) generated_sets "$out/data" train test ;;
  color) out=$out/color && mkdir -p "$out" && generated_sets --color "$out/data" train test ;;
  *) die "EXP_DATA: '${EXP_DATA}' is neither gray nor color" ;;
esac
data=$out/data
longest=$(tr ' ' '\n' <<<"$steps" | sort -n | tail -n 1)
milestones=$(tr ' ' ',' <<<"$steps")
names=()

for variant in "${variants[@]}"; do
  vname=${variant%%=*}
  overrides=${variant#*=}
  names+=("$vname")
  vset=()
  IFS=, read -r -a pairs <<<"$overrides"
  for pair in "${pairs[@]}"; do vset+=(--set "$pair"); done
  for method in $methods; do
    for loss in $losses; do
      for seed in $seeds; do
        name=${vname}_${method}_${loss}_seed$seed
        set_opts=(--set "model.method=$method" --set "model.loss.kind=$loss"
          --set "trainer.seed=$seed" "${vset[@]}")
        if [[ ! -f $out/$name.pt ]]; then
          echo "== train $name ($longest steps, saved at $milestones)"
          "$cli" train "${set_opts[@]}" --images "$data/train/images" \
            --clicks "$data/train/clicks.jsonl" --out "$out/$name.pt" --steps "$longest" \
            --save-at "$milestones" | tail -n 1 >"$out/train_$name.json"
        fi
        for n in $steps; do
          model=$out/$name.step$n.pt
          [[ $n == "$longest" ]] && model=$out/$name.pt
          scores=$out/calibrate_${name}_$n.json
          [[ -s $scores ]] && continue
          "$cli" calibrate "${set_opts[@]}" --model "$model" --images "$data/test/images" \
            --truth "$data/test/truth" --clicks "$data/test/clicks.jsonl" \
            --samples "$samples" >"$scores" 2>/dev/null
        done
      done
    done
  done
done

"$PYTHON" - "$out" "${names[*]}" "$methods" "$losses" "$seeds" "$steps" <<'PY'
import json, os, statistics, sys
out, variants, methods, losses, seeds, steps = sys.argv[1], *[a.split() for a in sys.argv[2:]]

def dice(report, rule):
    if rule == "configured":
        return report["configured"]["dice"]
    if rule == "majority":
        return next(r["dice"] for r in report["rules"] if r["rule"] == "majority")
    if rule == "otsu":
        return next(r["dice"] for r in report["rules"]
                    if r["rule"] == "otsu" and r["density_sigma"] == 2 and r["otsu_floor"] == 0.05)
    if rule == "calibrated":
        return report["best"]["dice"]
    return report["best_click_disk"]["dice"]

print(f"Dice on 24 unseen generated images, mean over seeds {' '.join(seeds)} (spread max-min)")
print(f"{'variant':14}{'method':12}{'loss':8}{'rule':12}" + "".join(f"{s + ' steps':>16}" for s in steps))
for v in variants:
    for m in methods:
        for l in losses:
            for rule in ("configured", "otsu", "majority", "calibrated", "click disk"):
                cells = []
                for n in steps:
                    d = [dice(json.load(open(os.path.join(out, f"calibrate_{v}_{m}_{l}_seed{s}_{n}.json"))), rule) for s in seeds]
                    cells.append(f"{statistics.mean(d):.3f} ({max(d) - min(d):.3f})")
                print(f"{v:14}{m:12}{l:8}{rule:12}" + "".join(f"{c:>16}" for c in cells))
PY
