"""The flood's clicks and its watcher (run by ops/chaos/flood.sh).

  flood.py clicks TRUTH_DIR OUT --per-image K --seed S
      writes K positive clicks per image to OUT (JSON Lines, `clickdiff produce --clicks`), each on
      a distinct pixel of the image's object in its truth mask (class-id PNG), so that every click
      is a new event with an id of its own.
  flood.py watch RUNTIME_FILE --pid PID --expect JSON --limit-mb MB --samples TSV [--timeout S]
                 [--every S]
      polls the service's STATUS and its resident memory (/proc/PID/status) until it has stored
      the counts in --expect or S seconds have passed; prints a line at each tenth of the stream,
      then the figures as one JSON line, and the samples (seconds, events consumed, images and
      clicks stored, resident MiB) to the TSV file --samples. Exits 1 when the stream was not all
      stored, the broker deleted records before they were read, or the peak resident memory
      passed MB.
"""
import argparse
import json
import pathlib
import random
import sys
import time

import numpy as np
from PIL import Image

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import soak  # noqa: E402  pylint: disable=wrong-import-position


def cmd_clicks(args):
    rng = random.Random(args.seed)
    lines = 0
    with open(args.out, "w", encoding="utf-8") as out:
        for path in sorted(pathlib.Path(args.truth).glob("*.png")):
            mask = np.asarray(Image.open(path))
            ys, xs = np.nonzero(mask)
            if len(xs) == 0:
                continue
            for i in rng.sample(range(len(xs)), min(args.per_image, len(xs))):
                out.write(json.dumps({"image": path.name, "x": int(xs[i]), "y": int(ys[i]),
                                      "class": int(mask[ys[i], xs[i]])}) + "\n")
                lines += 1
    print(lines)


def memory_kb(pid):
    """(resident, peak resident) in KiB of process PID, from /proc/PID/status."""
    fields = {}
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0])
    return fields["VmRSS"], fields["VmHWM"]


def cmd_watch(args):
    expect = json.loads(args.expect)
    total = sum(expect.values())
    start = time.monotonic()
    next_tenth, peak_kb, samples = 1, 0, []
    while True:
        s = soak.ask_status(args.runtime_file, 30)
        rss_kb, hwm_kb = memory_kb(args.pid)
        peak_kb = max(peak_kb, hwm_kb)
        elapsed = time.monotonic() - start
        counts = {"images": s.images, "clicks": s.clicks}
        stored = sum(counts[k] for k in expect)
        samples.append([round(elapsed, 1), s.events, s.images, s.clicks, rss_kb // 1024])
        while next_tenth <= 10 and stored * 10 >= next_tenth * total:
            print(f"flood: {stored:>8} of {total} events stored ({s.images} images, {s.clicks} "
                  f"clicks) after {elapsed:6.0f} s, {s.events} consumed, resident "
                  f"{rss_kb / 1024:6.0f} MiB (peak {peak_kb / 1024:.0f} MiB), model version "
                  f"{s.model_version}, {s.in_flight} in flight", flush=True)
            next_tenth += 1
        done = all(counts[k] >= expect[k] for k in expect)
        if done or elapsed >= args.timeout:
            break
        time.sleep(args.every)
    report = {**counts, "seconds": round(elapsed, 1),
              "events_per_s": round(stored / max(elapsed, 1e-9), 1),
              "resident_mib": rss_kb // 1024, "peak_resident_mib": peak_kb // 1024,
              "limit_mib": args.limit_mb, "model_version": s.model_version,
              "dead_letters": s.dead_letters, "skipped_records": s.skipped_records,
              "masks": s.masks}
    print(json.dumps(report))
    pathlib.Path(args.samples).write_text(
        "seconds\tconsumed\timages\tclicks\tresident_mib\n" +
        "".join("\t".join(str(v) for v in row) + "\n" for row in samples))
    problems = []
    if not done:
        problems.append(f"{stored} of {total} events stored within {args.timeout} s")
    if s.skipped_records:
        problems.append(f"the broker deleted {s.skipped_records} records before they were read")
    if peak_kb > args.limit_mb * 1024:
        problems.append(f"peak resident memory {peak_kb // 1024} MiB over {args.limit_mb} MiB")
    for p in problems:
        print(f"flood: {p}", file=sys.stderr)
    print("flood:", "FAILED" if problems else
          f"{stored} events stored in {elapsed:.0f} s, peak resident memory {peak_kb // 1024} MiB "
          f"(limit {args.limit_mb} MiB)")
    sys.exit(1 if problems else 0)


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    clicks = sub.add_parser("clicks")
    clicks.add_argument("truth")
    clicks.add_argument("out")
    clicks.add_argument("--per-image", type=int, required=True)
    clicks.add_argument("--seed", type=int, default=1)
    watch = sub.add_parser("watch")
    watch.add_argument("runtime_file")
    watch.add_argument("--pid", type=int, required=True)
    watch.add_argument("--expect", required=True, help='JSON {"images": n, "clicks": n}')
    watch.add_argument("--limit-mb", type=int, required=True)
    watch.add_argument("--timeout", type=int, default=3600)
    watch.add_argument("--every", type=float, default=2)
    watch.add_argument("--samples", required=True, help="where the RSS samples go (TSV)")
    args = parser.parse_args()
    {"clicks": cmd_clicks, "watch": cmd_watch}[args.command](args)


if __name__ == "__main__":
    main()
