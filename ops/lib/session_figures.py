#!/usr/bin/python3
"""ops/lib/session_figures.py — the annotator's session: figures and the printed summary.

Usage (on /usr/bin/python3, the interpreter ops/setup.sh provisions; ops/experiments/annotate_session.sh
runs it as $PYTHON):
  /usr/bin/python3 ops/lib/session_figures.py OUT "SEED..." ARM...
Inputs: OUT/seed<S>/<ARM>/session.jsonl (`clickdiff annotate`: {"event": "click" | "image" |
"session", ...}) and OUT/seed<S>/<ARM>/stats.json (`clickdiff stats --json`), for every SEED of
the list (one argument, space-separated: only this run's seeds, whatever else OUT holds) and every
ARM (learn, frozen). A run that did not finish (no session record) is reported and left out.
Prints per seed and arm: images, clicks per image (all; images 51-100, or the second half of a
shorter stream), images that reached the target, NoC per structure, first-click Dice (first 10 and
last 10 images; the largest fall of its 10-image moving mean below its best so far), the click ->
mask latency p50 (the click's first answer, its preview; the first final mask reflecting it; the
mask of a version trained on it), the mean Dice after a click of the first answer and of the mask
the annotator judged; then the
total clicks of learn / frozen per seed and their mean (spread); and for the learn arm the rank
correlation over versions of the fresh first-click hit rate with Dice (10-version moving means).
Writes OUT/session.png: clicks per image and first-click Dice against the image's place in the
stream (10-image moving means, one line per seed and arm), and per version of the learn arm the
fresh first-click hit rate beside Dice.
Exit status: 0; 1 naming the file on a malformed input or when no run finished.
"""
import json
import os
import statistics
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def fail(message):
    print(f"session_figures.py: {message}", file=sys.stderr)
    sys.exit(1)


def read_session(path):
    clicks, images, session = [], [], None
    try:
        with open(path) as f:
            for line in f:
                r = json.loads(line)
                if r["event"] == "click":
                    clicks.append(r)
                elif r["event"] == "image":
                    images.append(r)
                elif r["event"] == "session":
                    session = r
    except (OSError, ValueError, KeyError) as e:
        fail(f"{path}: {e}")
    return clicks, images, session


def moving(values, n=10):
    out = []
    for i in range(len(values)):
        window = [v for v in values[max(0, i - n + 1):i + 1] if v is not None]
        out.append(sum(window) / len(window) if window else None)
    return out


def ranks(values):
    order = sorted(range(len(values)), key=lambda i: values[i])
    r = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            r[order[k]] = (i + j) / 2
        i = j + 1
    return r


def spearman(a, b):
    if len(a) < 3:
        return None
    ra, rb = np.array(ranks(a)), np.array(ranks(b))
    if ra.std() == 0 or rb.std() == 0:
        return None
    return float(np.corrcoef(ra, rb)[0, 1])


def first_click_dice(image):
    values = [c["first_click_dice"] for c in image["classes"].values()]
    return sum(values) / len(values) if values else None


def summarize(clicks, images):
    per_image = [im["clicks"] for im in images]
    late = per_image[50:] if len(per_image) > 50 else per_image[len(per_image) // 2:]
    first = [first_click_dice(im) for im in images]
    mm = moving(first)
    best, fall = None, 0.0
    for v in mm:
        if v is None:
            continue
        best = v if best is None else max(best, v)
        fall = max(fall, best - v)
    noc = {}
    for im in images:
        for c, s in im["classes"].items():
            noc.setdefault(c, []).append(s["clicks"])
    median = lambda v: statistics.median(v) if v else None
    mean = lambda v: statistics.mean(v) if v else None
    return {
        "images": len(images),
        "clicks": sum(per_image),
        "per_image": sum(per_image) / max(1, len(per_image)),
        "late": sum(late) / max(1, len(late)),
        "late_label": "51-100" if len(per_image) > 50 else "2nd half",
        "reached": sum(im["reached"] for im in images),
        "noc": {c: sum(v) / len(v) for c, v in sorted(noc.items())},
        "first_head": statistics.mean([v for v in first[:10] if v is not None] or [0]),
        "first_tail": statistics.mean([v for v in first[-10:] if v is not None] or [0]),
        "first_fall": fall,
        # A click's first answer (its preview; runs before previews existed have none).
        "first_p50": median([c["first_ms"] for c in clicks if "first_ms" in c]),
        "first_answer_dice": mean([c["first_dice"] for c in clicks if "first_dice" in c]),
        "click_dice": mean([c["dice"] for c in clicks]),
        "response_p50": median([c["response_ms"] for c in clicks]),
        "learned_p50": median([c["learned_ms"] for c in clicks if c["learned_ms"] is not None]),
        "learned": sum(c["learned_ms"] is not None for c in clicks),
        "per_image_curve": moving(per_image),
        "first_curve": mm,
    }


def version_curves(stats_path):
    try:
        versions = json.load(open(stats_path))["versions"]
    except (OSError, ValueError, KeyError) as e:
        fail(f"{stats_path}: {e}")
    rows = [v for v in versions if v["images"] > 0 and v["fresh_clicks"]["first_tested"] > 0]
    rows.sort(key=lambda v: v["model_version"])
    hit = [v["fresh_clicks"]["first_hits"] / v["fresh_clicks"]["first_tested"] for v in rows]
    dice = [v["mean_dice"] for v in rows]
    return [v["model_version"] for v in rows], hit, dice


def main():
    if len(sys.argv) < 4:
        fail('usage: session_figures.py OUT "SEED..." ARM...')
    out, arms = sys.argv[1], sys.argv[3:]
    seeds = [os.path.join(out, f"seed{s}") for s in sys.argv[2].split()]
    if not seeds:
        fail("no seeds given")
    fmt = lambda x, f="{:.3f}": "-" if x is None else f.format(x)
    results = {}
    print(f"{'seed':>4} {'arm':>6} {'images':>6} {'clicks':>6} {'/image':>6} {'late':>12} "
          f"{'reached':>7} {'1st Dice 1-10':>13} {'last 10':>7} {'fall':>5} "
          f"{'1st answer p50 ms':>17} {'mask p50 ms':>11} {'learned p50 ms':>14} "
          f"{'Dice 1st answer / mask':>22}  NoC per structure")
    for folder in seeds:
        seed = folder.rsplit("seed", 1)[1]
        for arm in arms:
            path = os.path.join(folder, arm, "session.jsonl")
            if not os.path.exists(path):
                print(f"{seed:>4} {arm:>6} no session ({path} is missing)")
                continue
            clicks, images, session = read_session(path)
            if session is None or not images:
                print(f"{seed:>4} {arm:>6} did not finish ({len(images)} images): left out")
                continue
            s = summarize(clicks, images)
            results[(seed, arm)] = s
            noc = " ".join(f"{c}:{v:.2f}" for c, v in s["noc"].items())
            print(f"{seed:>4} {arm:>6} {s['images']:>6} {s['clicks']:>6} {s['per_image']:>6.2f} "
                  f"{s['late']:>6.2f} ({s['late_label']}) {s['reached']:>7} "
                  f"{s['first_head']:>13.3f} {s['first_tail']:>7.3f} {s['first_fall']:>5.2f} "
                  f"{fmt(s['first_p50'], '{:.0f}'):>17} "
                  f"{fmt(s['response_p50'], '{:.0f}'):>11} {fmt(s['learned_p50'], '{:.0f}'):>14} "
                  f"{fmt(s['first_answer_dice']) + ' / ' + fmt(s['click_dice']):>22}  {noc}")
    if not results:
        fail("no run finished")
    pairs = [(results.get((f.rsplit("seed", 1)[1], "learn")),
              results.get((f.rsplit("seed", 1)[1], "frozen"))) for f in seeds]
    ratios = [learn["clicks"] / frozen["clicks"] for learn, frozen in pairs
              if learn and frozen and frozen["clicks"] > 0]
    if ratios:
        spread = statistics.stdev(ratios) if len(ratios) > 1 else 0.0
        print("total clicks learn / frozen: " + " ".join(f"{r:.3f}" for r in ratios) +
              f"; mean {statistics.mean(ratios):.3f} (sd {spread:.3f})")
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.5))
    for (seed, arm), s in results.items():
        style = "-" if arm == "learn" else "--"
        x = range(1, len(s["per_image_curve"]) + 1)
        axes[0].plot(x, s["per_image_curve"], style, label=f"{arm} seed {seed}")
        axes[1].plot(x, s["first_curve"], style, label=f"{arm} seed {seed}")
    axes[0].set(xlabel="image in the stream", ylabel="clicks per image (10-image mean)",
                title="clicks the annotator needed")
    axes[1].set(xlabel="image in the stream", ylabel="Dice after the first click (10-image mean)",
                title="first-click Dice", ylim=(0, 1))
    for ax in axes[:2]:
        ax.legend(fontsize=7)
    if "learn" in arms:
        for folder in seeds:
            seed = folder.rsplit("seed", 1)[1]
            if (seed, "learn") not in results:
                continue
            v, hit, dice = version_curves(os.path.join(folder, "learn", "stats.json"))
            mh, md = moving(hit), moving(dice)
            rho = spearman(mh, md)
            print(f"seed {seed}: {len(v)} versions with fresh first clicks; rank correlation of "
                  f"their hit rate with Dice (10-version means): {fmt(rho, '{:.2f}')}")
            line, = axes[2].plot(v, mh, "-", label=f"first-click hits, seed {seed}")
            axes[2].plot(v, md, ":", color=line.get_color(), label=f"Dice, seed {seed}")
        axes[2].set(xlabel="model version", ylabel="10-version mean", ylim=(0, 1.05),
                    title="learn arm: fresh first clicks held vs Dice")
        axes[2].legend(fontsize=7)
    fig.tight_layout()
    path = os.path.join(out, "session.png")
    fig.savefig(path, dpi=110)
    print(path)


if __name__ == "__main__":
    main()
