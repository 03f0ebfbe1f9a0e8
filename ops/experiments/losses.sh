#!/usr/bin/env bash
# ops/experiments/losses.sh — the supervision losses side by side on generated binary organs,
# through the product CLI only (clickdiff generate | train --save-at | infer | eval): every method
# and loss in EXP_METHODS x EXP_LOSSES, trained from one click per organ on 96 images, once per
# seed in EXP_SEEDS, its model saved at each length in EXP_STEPS and scored on 24 unseen images
# with the default aggregation rule (no calibration) and with the plain majority vote. Prints one
# row per method, loss and rule: mean Dice over the seeds (and its spread, max - min) at every
# length. Training is counted in steps, so the figures do not depend on the machine's speed.
#
#   ops/experiments/losses.sh [OUT]      (default OUT: out/losses)
# Settings (environment):
#   EXP_METHODS  methods (default "d3pm")
#   EXP_LOSSES   losses (default "focal pce_ms pce_cv")
#   EXP_SEEDS    trainer seeds (default "1 2 3")
#   EXP_STEPS    training lengths; the longest is the run (default "500 1000 2000")
#   EXP_SET      extra --set options for train and infer (default none)
#   EXP_PRESET   the CMake preset whose build runs (default release; ci reuses ops/test.sh's tree)
# Models and scores already in OUT are reused (delete them to redo a cell).
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=ops/lib/common.sh
source ops/lib/common.sh
out=${1:-out/losses}
methods=${EXP_METHODS:-d3pm}
losses=${EXP_LOSSES:-"focal pce_ms pce_cv"}
seeds=${EXP_SEEDS:-"1 2 3"}
steps=${EXP_STEPS:-"500 1000 2000"}
preset=${EXP_PRESET:-release}
read -r -a extra <<<"${EXP_SET:-}"
require_python
build_cli "$preset"
cli=$CLI
mkdir -p "$out"
generated_sets "$out/data" train test
data=$out/data
longest=$(tr ' ' '\n' <<<"$steps" | sort -n | tail -n 1)
milestones=$(tr ' ' ',' <<<"$steps")

for method in $methods; do
  for loss in $losses; do
    for seed in $seeds; do
      name=${method}_${loss}_seed$seed
      set_opts=(--set "model.method=$method" --set "model.loss.kind=$loss" --set "trainer.seed=$seed" "${extra[@]}")
      if [[ ! -f $out/$name.pt ]]; then
        echo "== train $name ($longest steps, saved at $milestones)"
        "$cli" train "${set_opts[@]}" --images "$data/train/images" \
          --clicks "$data/train/clicks.jsonl" --out "$out/$name.pt" --steps "$longest" \
          --save-at "$milestones" | tail -n 1 >"$out/train_$name.json"
      fi
      for n in $steps; do
        model=$out/$name.step$n.pt
        [[ $n == "$longest" ]] && model=$out/$name.pt
        for rule in default majority; do
          scores=$out/scores_${name}_${n}_$rule.json
          [[ -s $scores ]] && continue
          rule_opt=()
          [[ $rule == majority ]] && rule_opt=(--rule majority)
          "$cli" infer "${set_opts[@]}" --model "$model" --images "$data/test/images" \
            --out "$out/pred_${name}_${n}_$rule" "${rule_opt[@]}" >/dev/null
          "$cli" eval --pred "$out/pred_${name}_${n}_$rule" --truth "$data/test/truth" >"$scores"
        done
      done
    done
  done
done

"$PYTHON" - "$out" "$methods" "$losses" "$seeds" "$steps" <<'PY'
import json, os, statistics, sys
out, methods, losses, seeds, steps = sys.argv[1], *[a.split() for a in sys.argv[2:]]
print(f"Dice on 24 unseen generated images, mean over seeds {' '.join(seeds)} (spread max-min)")
print(f"{'method':12}{'loss':8}{'rule':10}" + "".join(f"{s + ' steps':>18}" for s in steps))
for m in methods:
    for l in losses:
        for rule in ("default", "majority"):
            cells = []
            for n in steps:
                d = [json.load(open(os.path.join(out, f"scores_{m}_{l}_seed{s}_{n}_{rule}.json")))["mean"]["dice"] for s in seeds]
                cells.append(f"{statistics.mean(d):.3f} ({max(d) - min(d):.3f})")
            print(f"{m:12}{l:8}{rule:10}" + "".join(f"{c:>18}" for c in cells))
PY
