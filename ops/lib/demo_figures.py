#!/usr/bin/python3
"""ops/lib/demo_figures.py — figures of the learning loop: the learning curve and mask overlays.

Usage (on /usr/bin/python3, the interpreter ops/setup.sh provisions: ops/demo.sh runs it as $PYTHON):
  /usr/bin/python3 ops/lib/demo_figures.py --data DIR --stream DIR --dataset NAME --stats FILE
                                           --out DIR [--images K] [--clicked FILE]
Inputs:
  --data DIR      a data set from `clickdiff generate`: images/<name>.png (gray, 8 or 16 bit),
                  truth/<name>.png (class id per pixel, 0 background), clicks.jsonl.
  --clicked FILE  JSON Lines of the clicks streamed to the service ({"image", "x", "y", "class",
                  optional "positive": false}); default DIR/clicks.jsonl. An image without a
                  click in it is "never clicked".
  --stream DIR, --dataset NAME
                  masks from `clickdiff subscribe --out DIR --versions`, one per model version:
                  DIR/NAME/versions/<stem>.v<version>.png (class ids) and
                  DIR/NAME/versions/uncertainty/<stem>.v<version>.png (0..255 = 0..1).
  --stats FILE    `clickdiff stats --json`: {"dataset", "versions": [{"model_version",
                  "clicks_seen", "images", "mean_dice", optional "clicked_dice",
                  "unclicked_dice"}, ...]}.
  --images K      rows of overlays.png (default 3).
Outputs (under --out, one printed line per file):
  learning_curve.png  mean Dice of the published masks against the clicks the model had seen;
                      hollow markers: versions scored on under half of the images (partial sweep).
  overlays.png        one row per image (those with the most versions, at least one never
                      clicked if any): the truth, up to 4 versions' masks spread from the first
                      to the last (title: version and Dice against the truth), the clicks, and
                      the last shown version's uncertainty.
Exit status: 0 on success; 1 with a message naming the file on a missing or malformed input.
"""
import argparse
import json
import math
import re
import sys
from pathlib import Path

try:
    import matplotlib
    import numpy as np
    from PIL import Image
except ImportError as e:
    sys.exit(f"demo_figures: {e} ({sys.executable}; ops/setup.sh installs python3-numpy, "
             "python3-matplotlib and python3-pil for /usr/bin/python3)")

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)
from matplotlib.lines import Line2D  # noqa: E402

VERSION_FILE = re.compile(r"^(?P<stem>.+)\.v(?P<version>\d+)\.png$")
MAX_VERSION_COLUMNS = 4
CLASS_COLORS = plt.get_cmap("tab10").colors


def fail(message):
    sys.exit(f"demo_figures: {message}")


def read_png(path):
    """The PNG as an integer array (values as stored: class ids, 0..255 or 0..65535)."""
    try:
        with Image.open(path) as image:
            return np.array(image)
    except (OSError, ValueError) as e:
        fail(f"{path}: cannot read PNG: {e}")


def read_json(path):
    try:
        return json.loads(Path(path).read_text())
    except OSError as e:
        fail(f"{path}: cannot read: {e.strerror}")
    except json.JSONDecodeError as e:
        fail(f"{path}: bad JSON: {e}")


def read_clicks(path):
    """{stem: [click, ...]} from a JSON Lines click file."""
    clicks = {}
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as e:
        fail(f"{path}: cannot read: {e.strerror}")
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            click = json.loads(line)
            stem = Path(click["image"]).name.removesuffix(".png")
            clicks.setdefault(stem, []).append(
                (float(click["x"]), float(click["y"]), int(click.get("class", 1)),
                 click.get("positive", True)))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
            fail(f"{path}:{number}: bad click ({e!r})")
    return clicks


def scan_versions(versions_dir):
    """{stem: {version: mask path}} for every <stem>.v<version>.png in versions_dir."""
    if not versions_dir.is_dir():
        fail(f"{versions_dir}: no such directory (no versioned masks were received)")
    found = {}
    for path in versions_dir.glob("*.png"):
        match = VERSION_FILE.match(path.name)
        if match:
            found.setdefault(match["stem"], {})[int(match["version"])] = path
    if not found:
        fail(f"{versions_dir}: no <image>.v<version>.png masks")
    return found


def number(value):
    return math.nan if value is None else float(value)


def read_stats(path):
    """The stats JSON with every version checked for the keys the learning curve needs."""
    stats = read_json(path)
    versions = stats.get("versions") if isinstance(stats, dict) else None
    if not versions:
        fail(f"{path}: no \"versions\" to plot")
    for v in versions:
        missing = [k for k in ("model_version", "clicks_seen", "images", "mean_dice") if k not in v]
        if missing:
            fail(f"{path}: version {v.get('model_version', '?')} lacks {', '.join(missing)}")
    # A version with fresh-click checks but no scored mask has no point on the Dice curve.
    stats["versions"] = [v for v in versions if number(v["images"]) > 0]
    if not stats["versions"]:
        fail(f"{path}: no version has a scored mask")
    return stats


def dice(pred, truth):
    """Mean Dice over the foreground classes present in the truth or the prediction (1 if none)."""
    classes = [c for c in np.union1d(np.unique(pred), np.unique(truth)) if c != 0]
    if not classes:
        return 1.0
    scores = [2 * np.sum((pred == c) & (truth == c)) / (np.sum(pred == c) + np.sum(truth == c))
              for c in classes]
    return float(np.mean(scores))


def plot_series(ax, x, y, partial, label, color, marker):
    """One line through every version; filled markers, hollow and faded for partial sweeps."""
    ax.plot(x, y, "-", color=color, label=label, lw=1.5)
    full = ~partial
    ax.plot(x[full], y[full], marker, color=color, ms=6, ls="none")
    ax.plot(x[partial], y[partial], marker, mfc="none", mec=color, alpha=0.45, ms=6, ls="none")


def plot_learning_curve(stats, path):
    versions = stats["versions"]
    x = np.array([number(v["clicks_seen"]) for v in versions])
    coverage = np.array([number(v["images"]) for v in versions])
    partial = coverage < 0.5 * np.nanmax(coverage)
    fig, ax = plt.subplots(figsize=(7, 4.5), layout="constrained")
    series = [("mean_dice", "all images", "tab:blue", "o"),
              ("clicked_dice", "clicked images", "tab:green", "s"),
              ("unclicked_dice", "never-clicked images", "tab:orange", "^")]
    for key, label, color, marker in series:
        if any(v.get(key) is not None for v in versions):
            y = np.array([number(v.get(key)) for v in versions])
            plot_series(ax, x, y, partial, label, color, marker)
    for v, xi in zip(versions, x):
        ax.annotate(f"v{v['model_version']}", (xi, number(v["mean_dice"])), fontsize=7,
                    color="0.45", textcoords="offset points", xytext=(3, 5))
    handles, labels = ax.get_legend_handles_labels()
    if partial.any():
        handles.append(Line2D([], [], marker="o", mfc="none", mec="0.4", ls="none"))
        labels.append(f"partial sweep (< {np.nanmax(coverage) / 2:g} images scored)")
    ax.legend(handles, labels, loc="lower right", fontsize=8)
    ax.set(ylim=(0, 1), xlabel="clicks received by the model version",
           ylabel="mean Dice of published masks",
           title=f"Learning curve — dataset {stats.get('dataset', '?')}")
    ax.grid(alpha=0.3)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def choose_images(candidates, clicks, count):
    """The `count` stems with the most versions, one never-clicked stem among them if any."""
    ranked = sorted(candidates, key=lambda s: (-len(candidates[s]), s))
    chosen = ranked[:count]
    never = [s for s in ranked if s not in clicks]
    if never and not any(s in never for s in chosen):
        chosen[-1] = never[0]
    return chosen


def spread(versions, count):
    """Up to `count` of the sorted versions, evenly spaced from the first to the last."""
    versions = sorted(versions)
    if len(versions) <= count:
        return versions
    return [versions[round(i)] for i in np.linspace(0, len(versions) - 1, count)]


def show_image(ax, image, truth, contour_color=None, contour_width=1.2):
    """The image (gray or RGB) with the truth's outline per class (in the class colour by default)."""
    if image.ndim == 3:
        ax.imshow(image[..., :3] / max(float(image.max()), 1.0))
    else:
        ax.imshow(image, cmap="gray", vmin=image.min(), vmax=max(image.max(), image.min() + 1))
    for c in np.unique(truth[truth > 0]):
        ax.contour(truth == c, levels=[0.5], colors=[contour_color or CLASS_COLORS[c % 10]],
                   linewidths=contour_width)


def show_mask(ax, mask):
    overlay = np.zeros(mask.shape + (4,))
    for c in np.unique(mask[mask > 0]):
        overlay[mask == c] = (*CLASS_COLORS[c % 10], 0.45)
    ax.imshow(overlay)


def show_clicks(ax, clicks):
    for x, y, cls, positive in clicks:
        if positive:
            ax.plot(x, y, "o", ms=5, mfc=CLASS_COLORS[cls % 10], mec="white", mew=0.8)
        else:
            ax.plot(x, y, "x", ms=6, color="red", mew=1.5)


def load_matching(path, shape):
    array = read_png(path)
    if array.shape != shape[:2]:
        fail(f"{path}: size {array.shape} differs from the image's {shape}")
    return array


def plot_row(axes, stem, data, versions, uncertainty_dir, clicks):
    image = read_png(data / "images" / f"{stem}.png")
    truth = load_matching(data / "truth" / f"{stem}.png", image.shape)
    show_image(axes[0], image, truth)
    axes[0].set_title("image + truth", fontsize=9)
    axes[0].set_ylabel(f"{stem}\n{'clicked' if stem in clicks else 'never clicked'}", fontsize=9)
    shown = spread(versions, MAX_VERSION_COLUMNS)
    for ax, version in zip(axes[1:-1], shown):
        mask = load_matching(versions[version], image.shape)
        show_image(ax, image, truth, "white", 0.7)
        show_mask(ax, mask)
        show_clicks(ax, clicks.get(stem, []))
        ax.set_title(f"v{version}  Dice {dice(mask, truth):.2f}", fontsize=9)
    last = shown[-1]
    axes[-1].set_title(f"uncertainty v{last}", fontsize=9)
    uncertainty = uncertainty_dir / f"{stem}.v{last}.png"
    if not uncertainty.exists():
        axes[-1].text(0.5, 0.5, "none received", ha="center", va="center", fontsize=8)
        return None
    return axes[-1].imshow(load_matching(uncertainty, image.shape) / 255.0, cmap="magma",
                           vmin=0, vmax=1)


def plot_overlays(stems, data, versions, uncertainty_dir, clicks, path):
    columns = 2 + max(len(spread(versions[s], MAX_VERSION_COLUMNS)) for s in stems)
    fig, axes = plt.subplots(len(stems), columns, figsize=(2.2 * columns + 0.6, 2.3 * len(stems)),
                             layout="constrained", squeeze=False)
    for ax in axes.flat:
        ax.set(xticks=[], yticks=[])
        ax.spines[:].set_visible(False)
    heat = [plot_row(row, s, data, versions[s], uncertainty_dir, clicks)
            for row, s in zip(axes, stems)]
    heat = [h for h in heat if h is not None]
    if heat:
        fig.colorbar(heat[0], ax=axes[:, -1], shrink=0.8, label="uncertainty")
    fig.savefig(path, dpi=120)
    plt.close(fig)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="generated data set directory")
    parser.add_argument("--stream", type=Path, required=True, help="`clickdiff subscribe --out`")
    parser.add_argument("--dataset", required=True, help="dataset name under --stream")
    parser.add_argument("--stats", type=Path, required=True, help="`clickdiff stats --json` file")
    parser.add_argument("--out", type=Path, required=True, help="directory for the figures")
    parser.add_argument("--images", type=int, default=3, help="rows of overlays.png (default 3)")
    parser.add_argument("--clicked", type=Path, help="streamed clicks (default DATA/clicks.jsonl)")
    args = parser.parse_args()
    if args.images < 1:
        parser.error("--images must be at least 1")
    return args


def main():
    args = parse_args()
    for directory in (args.data / "images", args.data / "truth"):
        if not directory.is_dir():
            fail(f"{directory}: no such directory")
    stats = read_stats(args.stats)
    clicks = read_clicks(args.clicked or args.data / "clicks.jsonl")
    versions_dir = args.stream / args.dataset / "versions"
    versions = scan_versions(versions_dir)
    candidates = {s: v for s, v in versions.items() if (args.data / "images" / f"{s}.png").exists()}
    if not candidates:
        fail(f"{versions_dir}: no mask belongs to an image in {args.data / 'images'}")
    args.out.mkdir(parents=True, exist_ok=True)
    curve = args.out / "learning_curve.png"
    plot_learning_curve(stats, curve)
    print(curve)
    overlays = args.out / "overlays.png"
    stems = choose_images(candidates, clicks, args.images)
    plot_overlays(stems, args.data, candidates, versions_dir / "uncertainty", clicks, overlays)
    print(overlays)


if __name__ == "__main__":
    main()
