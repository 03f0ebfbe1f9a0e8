#!/usr/bin/env bash
# ops/experiments/acdc.sh — clicks versus full supervision on real cardiac MRI (ACDC).
#
# Trains the default d3pm model twice with the same wall-clock budget: once from
# train/clicks.jsonl (one click per class per slice) and once from train/truth (dense masks).
# Each model's aggregation rule is calibrated on a validation subset, then both segment the same
# test subset, and the script prints test Dice per class (RV=1, Myo=2, LV=3) and the ratio.
#
#   ops/experiments/acdc.sh [OUT]            (default OUT: out/acdc)
# Settings (environment):
#   ACDC_DATA        the data set: train/, val/, test/ with images/ and truth/, train/clicks.jsonl
#                    (default ../shared/data/acdc, relative to the repository root)
#   ACDC_SECONDS     training budget per model (default 300)
#   ACDC_VAL_EVERY / ACDC_TEST_EVERY  keep every n-th image (default 10 / 4)
# A model file already in OUT is reused (delete it to retrain), and so are scores newer than it.
# Python runs on /usr/bin/python3 (ops/lib/common.sh).
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=ops/lib/common.sh
source ops/lib/common.sh
data=${ACDC_DATA:-../shared/data/acdc}
out=${1:-out/acdc}
seconds=${ACDC_SECONDS:-300}
val_every=${ACDC_VAL_EVERY:-10}
test_every=${ACDC_TEST_EVERY:-4}
for d in train/images train/truth val/images val/truth test/images test/truth; do
  [[ -d $data/$d ]] || die "$data/$d: no such directory (ACDC_DATA names the ACDC data set)"
done
[[ -f $data/train/clicks.jsonl ]] || die "$data/train/clicks.jsonl: no such file"
require_commands cmake
require_python
cli=build/release/services/clickdiff
cmake --build --preset release --target clickdiff >/dev/null
classes=(--set model.num_classes=4 --set "model.class_names=[background,rv,myo,lv]")

mkdir -p "$out"
link_every "$data/val" "$val_every" "$out/val"
link_every "$data/test" "$test_every" "$out/test"
echo "validation: $(ls "$out/val/images" | wc -l) images; test: $(ls "$out/test/images" | wc -l) images"

for kind in clicks dense; do
  if [[ $kind == clicks ]]; then labels=(--clicks "$data/train/clicks.jsonl"); else labels=(--masks "$data/train/truth"); fi
  if [[ ! -f $out/$kind.pt ]]; then
    echo "== train from $kind (${seconds} s)"
    "$cli" train "${classes[@]}" --images "$data/train/images" "${labels[@]}" \
      --out "$out/$kind.pt" --seconds "$seconds" | tail -n 1 >"$out/train_$kind.json"
  fi
  if [[ -s $out/scores_$kind.json && $out/scores_$kind.json -nt $out/$kind.pt ]]; then
    echo "== $kind: reusing $out/scores_$kind.json"
    continue
  fi
  echo "== calibrate the $kind model on validation"
  "$cli" calibrate "${classes[@]}" --model "$out/$kind.pt" --images "$out/val/images" \
    --truth "$out/val/truth" --samples 16 >"$out/calibration_$kind.json"
  rule=$("$PYTHON" -c 'import json,sys; b=json.load(open(sys.argv[1]))["best"]; print(" ".join(f"--set aggregator.{k}={v}" for k,v in b.items() if k!="dice"))' "$out/calibration_$kind.json")
  echo "== segment the test images ($rule)"
  # shellcheck disable=SC2086  # rule is a list of --set options
  "$cli" infer "${classes[@]}" --model "$out/$kind.pt" --images "$out/test/images" \
    --out "$out/pred_$kind" $rule >/dev/null
  "$cli" eval --classes 4 --pred "$out/pred_$kind" --truth "$out/test/truth" >"$out/scores_$kind.json"
done

"$PYTHON" - "$out" <<'PY'
import json, sys
out = sys.argv[1]
s = {k: json.load(open(f"{out}/scores_{k}.json")) for k in ("clicks", "dense")}
t = {k: json.load(open(f"{out}/train_{k}.json")) for k in ("clicks", "dense")}
print(f"{'':8}{'steps':>7}{'RV':>8}{'Myo':>8}{'LV':>8}{'mean':>8}")
def dice(k, c): return next(r["dice"] for r in s[k]["classes"] if r["class"] == c)
for k in ("clicks", "dense"):
    row = [dice(k, c) for c in (1, 2, 3)]
    print(f"{k:8}{t[k]['steps']:>7}" + "".join(f"{v:8.3f}" for v in row) + f"{sum(row)/3:8.3f}")
ratio = [dice("clicks", c) / max(dice("dense", c), 1e-9) for c in (1, 2, 3)]
print(f"{'ratio':8}{'':>7}" + "".join(f"{v:8.3f}" for v in ratio) + f"{sum(ratio)/3:8.3f}")
PY
