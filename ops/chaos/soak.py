"""The kill -9 soak's bad events, status probe and checker (run by ops/chaos/soak.sh).

  soak.py bad OUT --images DIR --dataset NAME --count N --seed S
      writes N bad events of 13 kinds over the three input topics, one file each,
      OUT/<topic>/<nnnnn> (`kcat -P` sends a file as one message), and OUT/manifest.json.
  soak.py stored RUNTIME_FILE --expect JSON [--timeout S]
      polls the running service's STATUS (query socket) every 5 s until it has stored the counts
      in --expect (or S seconds have passed), then prints it as one JSON line.
  soak.py consuming RUNTIME_FILE [--timeout S]
      seconds until a freshly started service admits its first event ('-' if none within S).
  soak.py check --bootstrap HOST:PORT --bad OUT --expect JSON --status JSON
      reads every dead-letter topic and model-updates from the broker (kcat), prints the figures
      and exits 1 when an event was lost or stored twice, a bad event was not dead-lettered
      exactly once, a good one was, the broker deleted input, or model versions went back or
      were delivered twice (with --faults, a record delivered twice is counted, not failed).
"""
import argparse
import collections
import json
import pathlib
import random
import re
import struct
import subprocess
import sys
import time

import zmq

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "lib"))
import events_proto  # noqa: E402  pylint: disable=wrong-import-position

pb = events_proto.load()
TOPICS = ("images", "clicks", "labels")
STALL_S = 3  # seconds without a stored event that `stored` reports as a stall


def bad_events(images, dataset, size, rng):
    """Yields (topic, kind, bytes) forever: every way an input can be refused, in turn."""
    serial = iter(range(1 << 62))
    while True:
        k = next(serial)
        image = rng.choice(images)
        ident = f"bad-{k}"  # unique per round; each event adds its own suffix (idempotency keys)
        garbage = bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 64)))

        def image_event(**fields):
            return pb.ImageEvent(dataset=dataset, image_id=f"{ident}-{next(serial)}", width=size,
                                 height=size, channels=1, **fields).SerializeToString()

        yield "images", "garbage", garbage
        yield "images", "raw of the wrong size", image_event(
            encoding=pb.PAYLOAD_ENCODING_RAW, pixel_type=pb.PIXEL_TYPE_UINT8,
            payload=b"\x01" * (size * size - 1))
        yield "images", "NaN pixels", image_event(
            encoding=pb.PAYLOAD_ENCODING_RAW, pixel_type=pb.PIXEL_TYPE_FLOAT32,
            payload=struct.pack("<f", float("nan")) * (size * size))
        yield "images", "truncated PNG", image_event(
            encoding=pb.PAYLOAD_ENCODING_PNG, payload=b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR")
        yield "images", "hostile id", pb.ImageEvent(
            dataset=dataset, image_id=f"../{ident}", width=1, height=1, channels=1,
            encoding=pb.PAYLOAD_ENCODING_RAW, pixel_type=pb.PIXEL_TYPE_UINT8,
            payload=b"\x00").SerializeToString()

        def click(**fields):
            return pb.ClickEvent(dataset=dataset, image_id=image,
                                 click_id=f"{ident}-{next(serial)}", **fields).SerializeToString()

        yield "clicks", "garbage", garbage
        yield "clicks", "outside its image", click(x=size + k, y=1, class_id=1, positive=True)
        yield "clicks", "unknown class", click(x=1, y=1, class_id=7, positive=True)
        yield "clicks", "negative coordinate", click(x=-1, y=1, class_id=1, positive=True)

        def label(**fields):
            return pb.LabelEvent(dataset=dataset, image_id=image,
                                 label_id=f"{ident}-{next(serial)}", **fields).SerializeToString()

        yield "labels", "garbage", garbage
        yield "labels", "wrong size", label(dense=pb.DenseMask(width=3, height=3,
                                                               class_ids=bytes(9)))
        yield "labels", "unknown class value", label(dense=pb.DenseMask(
            width=size, height=size, class_ids=bytes([9]) * (size * size)))
        yield "labels", "image-level class out of range", label(
            image_level=pb.ImageLevelLabels(class_ids=[5]))


def cmd_bad(args):
    out = pathlib.Path(args.out)
    names = sorted(p.name for p in pathlib.Path(args.images).glob("*.png"))
    if not names:
        sys.exit(f"soak.py: no PNG images in {args.images}")
    # The images sent first: a bad click or label reaches intake with its image stored (one that
    # came a minute of stream time after it would be refused as a click for an unknown image).
    names = names[:max(1, len(names) // 100)]
    rng = random.Random(args.seed)
    kinds = collections.Counter()
    payloads = collections.defaultdict(list)
    events = bad_events(names, args.dataset, args.size, rng)
    for n in range(args.count):
        topic, kind, data = next(events)
        folder = out / topic
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{n:05d}").write_bytes(data)
        kinds[f"{topic}: {kind}"] += 1
        payloads[topic].append(data)
    manifest = {"topics": {t: len(payloads[t]) for t in TOPICS}, "kinds": dict(kinds)}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))


def ask_status(runtime_file, timeout):
    """The running service's ServiceStatus, asked on its query socket."""
    endpoint = json.loads(pathlib.Path(runtime_file).read_text())["query_endpoint"]
    context = zmq.Context()
    try:
        socket = context.socket(zmq.DEALER)
        socket.setsockopt(zmq.LINGER, 0)
        socket.connect(endpoint)
        socket.send(pb.Query(kind=pb.Query.KIND_STATUS).SerializeToString())
        if not socket.poll(timeout * 1000):
            sys.exit(f"soak.py: no STATUS from {endpoint} within {timeout} s")
        reply = pb.QueryReply()
        reply.ParseFromString(socket.recv_multipart()[-1])
        return reply.status
    finally:
        context.destroy(linger=0)


def cmd_stored(args):
    """Polls STATUS until it holds --expect; prints the last counts as JSON. With --clock-start (a
    Unix time) also when it was all stored and the stalls: the spans of over STALL_S seconds in
    which nothing more was stored, in seconds since then."""
    expect = json.loads(args.expect)
    deadline = time.monotonic() + args.timeout
    clock = args.clock_start or time.time()
    stalls, last_total, last_change = [], None, time.time() - clock
    while True:
        s = ask_status(args.runtime_file, 10)
        now = time.time() - clock
        counts = {"images": s.images, "clicks": s.clicks, "labels": s.labels}
        total = sum(counts.values())
        if total != last_total:
            if last_total is not None and now - last_change > STALL_S:
                stalls.append([round(last_change, 1), round(now, 1)])
            last_total, last_change = total, now
        if all(counts[k] >= expect[k] for k in expect):
            break
        if time.monotonic() >= deadline:
            print(f"soak: the stream did not finish within {args.timeout} s", file=sys.stderr)
            now = None  # not all stored
            break
        time.sleep(args.every)
    report = {**counts, "model_version": s.model_version, "dead_letters": s.dead_letters,
              "skipped_steps": s.skipped_steps, "unreadable_images": s.unreadable_images,
              "skipped_records": s.skipped_records}
    if args.clock_start:
        report.update(stalls=stalls, finished_s=None if now is None else round(now, 1))
    print(json.dumps(report))


def cmd_consuming(args):
    """Seconds until a freshly started service admits its first event, or '-' after --timeout."""
    start = time.monotonic()
    while time.monotonic() - start < args.timeout:
        if ask_status(args.runtime_file, 10).events > 0:
            print(f"{time.monotonic() - start:.1f}")
            return
        time.sleep(0.2)
    print("-")


def read_topic(bootstrap, topic):
    """Every record of `topic` as (partition, offset, value), in offset order per partition."""
    raw = subprocess.run(["kcat", "-C", "-b", bootstrap, "-t", topic, "-o", "beginning", "-e",
                          "-q", "-f", "%p %o %S\n%s"],
                         check=True, capture_output=True).stdout
    records, at = [], 0
    while at < len(raw):
        end = raw.index(b"\n", at)
        partition, offset, length = (int(x) for x in raw[at:end].split())
        records.append((partition, offset, raw[end + 1:end + 1 + max(length, 0)]))
        at = end + 1 + max(length, 0)
    return records


def check_retention(args, problems):
    """The input topics still start at offset 0: the broker deleted nothing the soak counts on."""
    for topic in TOPICS:
        first = {}
        for partition, offset, _ in read_topic(args.bootstrap, topic):
            first[partition] = min(offset, first.get(partition, offset))
        deleted = sum(first.values())
        if deleted:
            problems.append(f"the broker deleted the first {deleted} records of {topic} "
                            "(retention): the counts above do not hold")


def check_letters(args, bad_dir, problems):
    """Dead letters against the bad events sent: each exactly once, no good event among them."""
    # A repeat (same source offset) would be a letter sent again after a kill between the broker's
    # acknowledgement and the outbox's delete (the outbox reads its topics back at start to avoid
    # that; only a failed read-back sends again).
    print("dead letters     sent  distinct  repeats  good events dead-lettered")
    reasons = collections.Counter()
    for topic in TOPICS:
        sent = collections.Counter(p.read_bytes() for p in (bad_dir / topic).glob("*"))
        seen = collections.Counter()
        repeats = good = 0
        for _, _, value in read_topic(args.bootstrap, topic + args.dlq_suffix):
            letter = pb.DeadLetter()
            letter.ParseFromString(value)
            where = (letter.source_partition, letter.source_offset)
            if where in seen:
                repeats += 1
                seen[where] += 1
                continue
            seen[where] = 1
            if sent[letter.payload] > 0:
                sent[letter.payload] -= 1
                reasons[re.sub(r"\d+", "N", letter.reason)[:90]] += 1
            else:
                good += 1
                problems.append(f"{topic}@{letter.source_offset} was good and dead-lettered: "
                                f"{letter.reason}")
        missing = sum(sent.values())
        total = len(list((bad_dir / topic).glob("*")))
        print(f"  {topic:<12} {total:7d} {len(seen):9d} {repeats:8d} {good:10d}")
        if missing:
            problems.append(f"{missing} bad {topic} events never dead-lettered")
        if repeats and not args.faults:
            problems.append(f"{repeats} {topic} dead letter(s) delivered more than once")
    print("reasons (numbers as N):")
    for reason, n in reasons.most_common():
        print(f"  {n:6d}  {reason}")


def check_versions(args, expect, problems):
    """model-updates: versions increasing within each partition (a version's key picks its
    partition), each version one record (a repeat of the same bytes is a record the outbox sent
    again, as for dead letters; different bytes would be two versions under one number), none
    counting more clicks than were sent."""
    seen, last, repeats, back, clicks_seen = {}, {}, 0, 0, 0
    for partition, _, value in read_topic(args.bootstrap, "model-updates"):
        update = pb.ModelUpdate()
        update.ParseFromString(value)
        version = update.model_version
        if version in seen:
            repeats += 1
            if seen[version] != value:
                problems.append(f"model version {version} published twice, different each time")
            continue
        if version < last.get(partition, 0):
            back += 1
        seen[version] = value
        last[partition] = version
        clicks_seen = max(clicks_seen, update.clicks_seen)
    print(f"model versions: {len(seen)} published ({min(seen, default='-')} .. "
          f"{max(seen, default='-')}), {back} going back, {repeats} delivered again (same bytes); "
          f"most clicks seen {clicks_seen} of {expect['clicks']}")
    if back:
        problems.append(f"{back} model versions published below an earlier one")
    if repeats and not args.faults:
        problems.append(f"{repeats} model update(s) delivered more than once")
    if clicks_seen > expect["clicks"]:
        problems.append(f"a version saw {clicks_seen} clicks, more than the "
                        f"{expect['clicks']} good ones sent")


def cmd_check(args):
    expect = json.loads(args.expect)
    status = json.loads(args.status)
    problems = []
    print("stored (STATUS)   sent  stored")
    for kind in ("images", "clicks", "labels"):
        print(f"  {kind:<12} {expect[kind]:7d} {status[kind]:7d}")
        if status[kind] < expect[kind]:
            problems.append(f"{expect[kind] - status[kind]} {kind} lost")
        elif status[kind] > expect[kind]:
            problems.append(f"{status[kind] - expect[kind]} {kind} more than sent")
    if "stalls" in status:
        spans = ", ".join(f"{a:.1f}-{b:.1f} s ({b - a:.1f} s)" for a, b in status["stalls"])
        finished = status["finished_s"]
        print(("stored everything at " + f"{finished:.1f} s" if finished is not None
               else "the stream was not all stored") +
              f"; stalls over {STALL_S} s (nothing stored): {spans or 'none'}")
    check_retention(args, problems)
    if status.get("skipped_records"):
        problems.append(f"the last service passed over {status['skipped_records']} records the "
                        "broker deleted before they were read")
    check_letters(args, pathlib.Path(args.bad), problems)
    check_versions(args, expect, problems)
    if status["skipped_steps"] or status["unreadable_images"]:
        print(f"training: {status['skipped_steps']} skipped steps, "
              f"{status['unreadable_images']} unreadable images")
    for problem in problems:
        print("PROBLEM:", problem)
    print("soak:", "FAILED" if problems else "every good event stored once, every bad event "
          "dead-lettered and no good one, versions increasing")
    sys.exit(1 if problems else 0)


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    bad = sub.add_parser("bad")
    bad.add_argument("out")
    bad.add_argument("--images", required=True)
    bad.add_argument("--dataset", required=True)
    bad.add_argument("--size", type=int, required=True)
    bad.add_argument("--count", type=int, required=True)
    bad.add_argument("--seed", type=int, default=1)
    stored = sub.add_parser("stored")
    stored.add_argument("runtime_file")
    stored.add_argument("--expect", required=True, help='JSON {"images": n, "clicks": n, ...}')
    stored.add_argument("--timeout", type=int, default=900)
    stored.add_argument("--every", type=float, default=5, help="seconds between polls")
    stored.add_argument("--clock-start", type=float, help="Unix time the stalls are counted from")
    consuming = sub.add_parser("consuming")
    consuming.add_argument("runtime_file")
    consuming.add_argument("--timeout", type=int, default=60)
    check = sub.add_parser("check")
    check.add_argument("--bootstrap", required=True)
    check.add_argument("--bad", required=True)
    check.add_argument("--expect", required=True, help='JSON {"images": n, "clicks": n, ...}')
    check.add_argument("--status", required=True, help="JSON from `soak.py stored`")
    check.add_argument("--dlq-suffix", default=".dlq")
    check.add_argument("--faults", action="store_true",
                       help="broker faults ran: a record delivered twice is counted, not failed (a "
                       "delivery that timed out while the broker had written it is sent again)")
    args = parser.parse_args()
    commands = {"bad": cmd_bad, "stored": cmd_stored, "consuming": cmd_consuming,
                "check": cmd_check}
    commands[args.command](args)


if __name__ == "__main__":
    main()
