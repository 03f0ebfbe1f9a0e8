#!/usr/bin/env bash
# ops/experiments/supervision.sh — what each kind of supervision teaches, on real cardiac MRI
# (ACDC): the default model (d3pm, clicks as inputs) is trained on the same training slices, same
# budget in steps, once per seed and kind — dense masks (train/truth), scribbles (train/scribbles:
# partial label maps, 255 unlabelled) or one click per structure (train/clicks.jsonl) — saved at
# each length in EXP_STEPS, and segments the test slices from their own clicks (one per
# structure, shown to the model; `infer --clicks`) under the shipped aggregation rule, no
# calibration. Prints per kind and length the Dice per structure (RV, Myo, LV) and their mean over
# the seeds, the spread of the mean (max - min over seeds) and the ratio to dense. Sampling is the
# preview's (EXP_SAMPLES 4 x EXP_SAMPLE_STEPS 10) to keep the run short.
#
#   ops/experiments/supervision.sh [OUT]   (default OUT: out/supervision)
# Settings (environment):
#   EXP_KINDS     the rows (default "dense scribbles clicks")
#   EXP_SEEDS     trainer seeds (default "1 2 3")
#   EXP_STEPS     training lengths; the longest is the run (default "400 1200")
#   EXP_SET       further settings for every run, space-separated KEY=VALUE (default none)
#   EXP_SAMPLES / EXP_SAMPLE_STEPS  samples and denoising steps per test image (default 4 / 10)
#   EXP_PRESET    the CMake preset whose build runs (default release)
#   ACDC_DATA     the ACDC folder (default ../shared/data/acdc); EXP_ACDC_EVERY: keep every n-th
#                 slice of train and of test (default 8)
# Models and scores already in OUT are reused by name (kind and seed): delete them, or take a new
# OUT, to redo a cell or after a default changed. The slices are linked anew on every run.
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=ops/lib/common.sh
source ops/lib/common.sh
out=${1:-out/supervision}
read -r -a kinds <<<"${EXP_KINDS:-dense scribbles clicks}"
read -r -a seeds <<<"${EXP_SEEDS:-1 2 3}"
read -r -a steps <<<"${EXP_STEPS:-400 1200}"
read -r -a sets <<<"${EXP_SET:-}"
samples=${EXP_SAMPLES:-4}
sample_steps=${EXP_SAMPLE_STEPS:-10}
acdc=${ACDC_DATA:-../shared/data/acdc}
every=${EXP_ACDC_EVERY:-8}
fixed=()
for kv in "${sets[@]}"; do
  [[ $kv == *=* ]] || die "EXP_SET: '$kv' is not KEY=VALUE"
  fixed+=(--set "$kv")
done
for kind in "${kinds[@]}"; do
  [[ $kind == dense || $kind == scribbles || $kind == clicks ]] ||
    die "EXP_KINDS: unknown kind '$kind' (dense, scribbles, clicks)"
done
for sub in train/images train/truth train/scribbles test/images test/truth; do
  [[ -d $acdc/$sub ]] || die "$acdc/$sub: no such directory (ACDC_DATA names the ACDC folder)"
done
for f in train/clicks.jsonl test/clicks.jsonl; do
  [[ -f $acdc/$f ]] || die "$acdc/$f: no such file"
done
require_python
build_cli "${EXP_PRESET:-release}"
longest=$(printf '%s\n' "${steps[@]}" | sort -n | tail -n 1)
save_at=$(printf '%s\n' "${steps[@]}" | sort -n | head -n -1 | paste -sd, -)
classes=(--set model.num_classes=4 --set "model.class_names=[background,rv,myo,lv]")

mkdir -p "$out"
link_every "$acdc/train" "$every" "$out/train"
link_every "$acdc/test" "$every" "$out/test"
clicks_of "$acdc/train/clicks.jsonl" "$out/train/images" "$out/train/clicks.jsonl"
clicks_of "$acdc/test/clicks.jsonl" "$out/test/images" "$out/test/clicks.jsonl"
echo "train: $(find "$out/train/images" -name '*.png' | wc -l) slices;" \
  "test: $(find "$out/test/images" -name '*.png' | wc -l) slices"

for kind in "${kinds[@]}"; do
  case $kind in
    dense) labels=(--masks "$out/train/truth") ;;
    scribbles) labels=(--scribbles "$out/train/scribbles") ;;
    clicks) labels=(--clicks "$out/train/clicks.jsonl") ;;
  esac
  for seed in "${seeds[@]}"; do
    model=$out/${kind}_seed$seed.pt
    if [[ ! -f $model ]]; then
      echo "== $kind, seed $seed, $longest steps"
      at=()
      [[ -n $save_at ]] && at=(--save-at "$save_at")
      "$CLI" train "${classes[@]}" --images "$out/train/images" "${labels[@]}" --out "$model" \
        --steps "$longest" "${at[@]}" "${fixed[@]}" --set "trainer.seed=$seed" >/dev/null
    fi
    score_lengths "$model" "$out" 4 "$longest" "${steps[*]}" "${classes[@]}" \
      --samples "$samples" --steps "$sample_steps" "${fixed[@]}"
  done
done

"$PYTHON" - "$out" "${kinds[*]}" "${seeds[*]}" "${steps[*]}" <<'PY'
import json, sys
out = sys.argv[1]
kinds, seeds, steps = (a.split() for a in sys.argv[2:])
longest = max(steps, key=int)
def scores(kind, seed, n):
    stem = f"{out}/{kind}_seed{seed}" + ("" if n == longest else f".step{n}")
    s = json.load(open(stem + ".scores.json"))
    per_class = {r["class"]: r["dice"] for r in s["classes"]}
    return [per_class[c] for c in (1, 2, 3)]
print(f"ACDC test, one click per structure at test; mean over seeds {' '.join(seeds)}")
print(f"{'kind':10}{'steps':>7}{'RV':>8}{'Myo':>8}{'LV':>8}{'mean':>8}{'spread':>8}{'/dense':>8}"
      "  per seed")
def seed_means(kind, n):
    return [sum(scores(kind, seed, n)) / 3 for seed in seeds]
for n in sorted(steps, key=int):
    dense_mean = None
    if "dense" in kinds:
        dense_mean = sum(seed_means("dense", n)) / len(seeds)
    for kind in kinds:
        rows = [scores(kind, seed, n) for seed in seeds]
        per = [sum(r[c] for r in rows) / len(rows) for c in range(3)]
        means = seed_means(kind, n)
        mean = sum(means) / len(means)
        ratio = f"{mean / dense_mean:8.3f}" if dense_mean else f"{'':>8}"
        print(f"{kind:10}{n:>7}" + "".join(f"{v:8.3f}" for v in per) + f"{mean:8.3f}"
              f"{max(means) - min(means):8.3f}{ratio}  " + " ".join(f"{m:.3f}" for m in means))
PY
