#!/usr/bin/env bash
# ops/experiments/simulated_clicks.sh — what dense masks teach a click_input model, with and without
# clicks simulated on them (model.simulated_clicks), or under the values of any other training key
# (EXP_KEY, e.g. model.d3pm.prior_share): for each data set in EXP_DATA, the default
# d3pm model is trained on the training images' dense masks once per seed and setting, saved at
# each length in EXP_STEPS, and segments the test images from their own clicks (one per structure,
# shown to the model; `infer --clicks`) under the shipped aggregation rule, no calibration. Prints
# per data set, setting and length the mean Dice over the seeds, its spread (max - min) and the
# per-seed figures. Sampling is the preview's (EXP_SAMPLES 4 x EXP_SAMPLE_STEPS 10) to keep the
# run short.
#
#   ops/experiments/simulated_clicks.sh [OUT]   (default OUT: out/simulated_clicks)
# Settings (environment):
#   EXP_DATA      generated (24 training images, `generate --seed 21`; 32 test, seed 22), framed
#                 (the same images, each in a black frame 2-3 times its size: ops/lib/frame_images.py;
#                 compare EXP_KEY=model.crop_to_content EXP_SIM="false true" on it)
#                 and/or acdc (every EXP_ACDC_EVERY-th slice of train and of test, 4 classes;
#                 default generated acdc)
#   EXP_KEY       the configuration key compared (default model.simulated_clicks)
#   EXP_SIM       its values (default "0 0.8")
#   EXP_SET       further settings for every run, space-separated, e.g. "model.d3pm.prior_share=0"
#                 (default none; they become part of the file names)
#   EXP_SEEDS     trainer seeds (default "1 2 3")
#   EXP_STEPS     training lengths; the longest is the run (default "400 1200")
#   EXP_PRESET    the CMake preset whose build runs (default release)
#   ACDC_DATA     the ACDC folder (default ../shared/data/acdc); EXP_ACDC_EVERY (default 8)
# Models and scores already in OUT are reused by name (the key, its value, EXP_SET and the seed):
# delete them, or take a new OUT, to redo a cell or after a default changed.
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=ops/lib/common.sh
source ops/lib/common.sh
out=${1:-out/simulated_clicks}
read -r -a datasets <<<"${EXP_DATA:-generated acdc}"
key=${EXP_KEY:-model.simulated_clicks}
read -r -a sims <<<"${EXP_SIM:-0 0.8}"
read -r -a sets <<<"${EXP_SET:-}"
fixed=()
# Files are named by the key (sim for model.simulated_clicks), its value and then EXP_SET's
# settings, dots and other odd characters as _.
tag=${key//./_}
[[ $key == model.simulated_clicks ]] && tag=sim
suffix=
for kv in "${sets[@]}"; do
  [[ $kv == *=* ]] || die "EXP_SET: '$kv' is not KEY=VALUE"
  [[ ${kv%%=*} == "$key" ]] && die "EXP_SET: sets $key, the key EXP_KEY compares"
  fixed+=(--set "$kv")
  suffix+=_${kv//[^A-Za-z0-9=-]/_}
done
read -r -a seeds <<<"${EXP_SEEDS:-1 2 3}"
read -r -a steps <<<"${EXP_STEPS:-400 1200}"
samples=${EXP_SAMPLES:-4}
sample_steps=${EXP_SAMPLE_STEPS:-10}
acdc=${ACDC_DATA:-../shared/data/acdc}
every=${EXP_ACDC_EVERY:-8}
require_python
for d in "${datasets[@]}"; do
  [[ $d == generated || $d == framed || $d == acdc ]] ||
    die "EXP_DATA: unknown data set '$d' (generated, framed, acdc)"
  [[ $d == framed ]] && require_python_modules numpy PIL
  if [[ $d == acdc ]]; then
    for sub in train/images train/truth test/images test/truth; do
      [[ -d $acdc/$sub ]] || die "$acdc/$sub: no such directory (ACDC_DATA names the ACDC folder)"
    done
    [[ -f $acdc/test/clicks.jsonl ]] || die "$acdc/test/clicks.jsonl: no such file"
  fi
done
build_cli "${EXP_PRESET:-release}"
longest=$(printf '%s\n' "${steps[@]}" | sort -n | tail -n 1)
save_at=$(printf '%s\n' "${steps[@]}" | sort -n | head -n -1 | paste -sd, -)

for data in "${datasets[@]}"; do
  set_dir=$out/$data
  mkdir -p "$set_dir"
  classes=()
  if [[ $data == generated ]]; then
    [[ -d $set_dir/train ]] || "$CLI" generate --out "$set_dir/train" --count 24 --seed 21 >/dev/null
    [[ -d $set_dir/test ]] || "$CLI" generate --out "$set_dir/test" --count 32 --seed 22 >/dev/null
  elif [[ $data == framed ]]; then
    for part in train test; do
      [[ -d $set_dir/$part ]] && continue
      if [[ $part == train ]]; then n=24 gen_seed=21; else n=32 gen_seed=22; fi
      "$CLI" generate --out "$set_dir/plain_$part" --count "$n" --seed "$gen_seed" >/dev/null
      "$PYTHON" ops/lib/frame_images.py "$set_dir/plain_$part" "$set_dir/$part.partial" "$gen_seed"
      mv "$set_dir/$part.partial" "$set_dir/$part"
    done
  else
    classes=(--set model.num_classes=4 --set "model.class_names=[background,rv,myo,lv]")
    [[ -d $set_dir/train ]] || link_every "$acdc/train" "$every" "$set_dir/train"
    [[ -d $set_dir/test ]] || link_every "$acdc/test" "$every" "$set_dir/test"
    clicks_of "$acdc/train/clicks.jsonl" "$set_dir/train/images" "$set_dir/train/clicks.jsonl"
    clicks_of "$acdc/test/clicks.jsonl" "$set_dir/test/images" "$set_dir/test/clicks.jsonl"
  fi
  n_classes=2
  [[ $data == acdc ]] && n_classes=4
  for sim in "${sims[@]}"; do
    for seed in "${seeds[@]}"; do
      model=$set_dir/$tag$sim${suffix}_seed$seed.pt
      if [[ ! -f $model ]]; then
        echo "== $data: $key $sim, seed $seed, $longest steps"
        at=()
        [[ -n $save_at ]] && at=(--save-at "$save_at")
        "$CLI" train "${classes[@]}" --images "$set_dir/train/images" \
          --clicks "$set_dir/train/clicks.jsonl" --masks "$set_dir/train/truth" --out "$model" \
          --steps "$longest" "${at[@]}" --set "$key=$sim" \
          "${fixed[@]}" \
          --set "trainer.seed=$seed" >/dev/null
      fi
      score_lengths "$model" "$set_dir" "$n_classes" "$longest" "${steps[*]}" "${classes[@]}" \
        --samples "$samples" --steps "$sample_steps"
    done
  done
done

"$PYTHON" - "$out" "$tag" "$suffix" "${datasets[*]}" "${sims[*]}" "${seeds[*]}" "${steps[*]}" <<'PY'
import json, sys
out, tag, suffix = sys.argv[1:4]
datasets, sims, seeds, steps = (a.split() for a in sys.argv[4:])
longest = max(steps, key=int)
print(f"values of {tag}" + (f", with {suffix[1:]}" if suffix else ""))
print(f"{'data':10}{'value':>10}{'steps':>7}{'Dice':>8}{'spread':>8}  per seed")
for data in datasets:
    for sim in sims:
        for n in sorted(steps, key=int):
            dice = []
            for seed in seeds:
                stem = f"{out}/{data}/{tag}{sim}{suffix}_seed{seed}" + ("" if n == longest else f".step{n}")
                dice.append(json.load(open(stem + ".scores.json"))["mean"]["dice"])
            mean = sum(dice) / len(dice)
            print(f"{data:10}{sim:>10}{n:>7}{mean:8.3f}{max(dice) - min(dice):8.3f}  "
                  + " ".join(f"{d:.3f}" for d in dice))
PY
