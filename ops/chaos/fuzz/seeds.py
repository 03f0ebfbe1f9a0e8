"""Writes the fuzz targets' seed corpus, corpus/<target>/, from valid and nearly valid inputs.

Run by hand when a decoder's input format changes (the corpus is committed, so ctest needs no
Python). It overwrites its own seeds and leaves every other file, such as the inputs a fuzzing run
crashed on, which stay as regression tests: /usr/bin/python3 ops/chaos/fuzz/seeds.py. Needs
protoc, python3-protobuf, numpy and PIL (ops/setup.sh installs them).
"""
import io
import json
import pathlib
import struct
import sys

import numpy as np
from PIL import Image

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[2]
sys.path.insert(0, str(ROOT / "ops" / "lib"))
import events_proto  # noqa: E402  pylint: disable=wrong-import-position


def png(pixels, mode=None, **params):
    """PNG bytes of an array (or of a PIL image, saved as it is)."""
    image = pixels if isinstance(pixels, Image.Image) else Image.fromarray(pixels, mode)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", **params)
    return buffer.getvalue()


def images():
    """Small PNGs of every kind the codec reads, by name."""
    ramp = np.arange(12 * 10, dtype=np.uint8).reshape(10, 12)
    rgb = np.stack([ramp, ramp[::-1], 255 - ramp], axis=-1)
    rgba = np.concatenate([rgb, np.full((10, 12, 1), 200, np.uint8)], axis=-1)
    mask = (ramp % 4).astype(np.uint8)
    partial = np.where(ramp % 5 == 0, 255, ramp % 3).astype(np.uint8)
    return {
        "gray8": png(ramp),
        "gray16": png((ramp.astype(np.uint16) * 500).astype(np.uint16), "I;16"),
        "rgb8": png(rgb),
        "rgba8": png(rgba),
        "palette": png(Image.fromarray(rgb).convert("P")),
        "bilevel": png((ramp % 2 * 255).astype(np.uint8), "L", bits=1),
        "mask": png(mask),
        "partial": png(partial),
    }


def write(target, name, data):
    folder = HERE / "corpus" / target
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(data)


def event_seeds(pb, pngs):
    ramp = np.arange(8 * 6, dtype=np.uint8).reshape(6, 8)

    def image(name, width, height, channels, encoding, pixel_type, payload):
        e = pb.ImageEvent(dataset="ds", image_id=name, width=width, height=height,
                          channels=channels, encoding=encoding, pixel_type=pixel_type,
                          payload=payload, spacing=[1.0, 1.0], timestamp_ms=1)
        e.metadata["patient"] = "p1"
        write("event", f"image_{name}", b"\x00" + e.SerializeToString())

    image("png_gray8", 12, 10, 1, pb.PAYLOAD_ENCODING_PNG, pb.PIXEL_TYPE_UNSPECIFIED,
          pngs["gray8"])
    image("png_gray16", 12, 10, 1, pb.PAYLOAD_ENCODING_PNG, pb.PIXEL_TYPE_UNSPECIFIED,
          pngs["gray16"])
    image("png_rgb8", 12, 10, 3, pb.PAYLOAD_ENCODING_PNG, pb.PIXEL_TYPE_UNSPECIFIED,
          pngs["rgb8"])
    image("png_truncated", 12, 10, 1, pb.PAYLOAD_ENCODING_PNG, pb.PIXEL_TYPE_UNSPECIFIED,
          pngs["gray8"][:40])
    image("raw_uint8", 8, 6, 1, pb.PAYLOAD_ENCODING_RAW, pb.PIXEL_TYPE_UINT8, ramp.tobytes())
    image("raw_uint16", 8, 6, 1, pb.PAYLOAD_ENCODING_RAW, pb.PIXEL_TYPE_UINT16,
          ramp.astype("<u2").tobytes())
    image("raw_rgb_float", 4, 2, 3, pb.PAYLOAD_ENCODING_RAW, pb.PIXEL_TYPE_FLOAT32,
          np.linspace(0, 1, 24, dtype="<f4").tobytes())
    image("raw_nan", 2, 1, 1, pb.PAYLOAD_ENCODING_RAW, pb.PIXEL_TYPE_FLOAT32,
          struct.pack("<2f", float("nan"), 3e38))
    for name, click in {
        "positive": pb.ClickEvent(dataset="ds", image_id="a", click_id="c1", x=3, y=4,
                                  class_id=1, positive=True, annotator="x", timestamp_ms=2),
        "negative": pb.ClickEvent(dataset="ds", image_id="a", click_id="c2", x=0, y=0,
                                  class_id=0, positive=False),
        "bad_class": pb.ClickEvent(dataset="ds", image_id="a", click_id="c3", x=1, y=1,
                                   class_id=9, positive=True),
        "hostile_id": pb.ClickEvent(dataset="../ds", image_id="a/b", click_id="c4", x=1, y=1,
                                    class_id=1, positive=True),
    }.items():
        write("event", f"click_{name}", b"\x01" + click.SerializeToString())
    dense = pb.DenseMask(width=8, height=6, class_ids=(ramp % 3).astype(np.uint8).tobytes())
    partial = pb.DenseMask(width=8, height=6,
                           class_ids=np.where(ramp % 4 == 0, 1, 255).astype(np.uint8).tobytes())
    labels = {
        "dense": pb.LabelEvent(dataset="ds", image_id="a", label_id="l1", dense=dense),
        "evaluation": pb.LabelEvent(dataset="ds", image_id="a", label_id="l2", dense=dense,
                                    for_evaluation=True),
        "partial": pb.LabelEvent(dataset="ds", image_id="a", label_id="l3", dense=partial),
        "image_level": pb.LabelEvent(dataset="ds", image_id="a", label_id="l4",
                                     image_level=pb.ImageLevelLabels(class_ids=[1, 2])),
    }
    for name, label in labels.items():
        write("event", f"label_{name}", b"\x02" + label.SerializeToString())


def main():
    pb = events_proto.load()
    pngs = images()
    for name, data in pngs.items():
        write("png", name, data)
    write("png", "truncated", pngs["rgb8"][: len(pngs["rgb8"]) // 2])
    event_seeds(pb, pngs)
    floats = np.linspace(-1, 1, 12, dtype="<f4")
    write("raw", "gray_4x3", bytes([4, 3, 0]) + floats.tobytes())
    write("raw", "rgb_2x2", bytes([2, 2, 2]) + floats.tobytes())
    write("raw", "short", bytes([4, 3, 0]) + floats[:5].tobytes())
    write("raw", "inf", bytes([1, 1, 0]) + struct.pack("<f", float("inf")))
    lines = [json.dumps({"image": "a.png", "x": 3, "y": 4, "class": 1}),
             json.dumps({"image": "a.png", "x": 1, "y": 2, "class": 0, "positive": False}),
             "",
             json.dumps({"image": "patient001_frame01_slice_1.png", "x": 59, "y": 161,
                         "class": 3, "click_id": "c-9", "annotator": "ann"})]
    write("clicks", "valid", "\n".join(lines).encode())
    write("clicks", "bad_type", b'{"image": "a.png", "x": "3", "y": 4, "class": 1}\n')
    write("clicks", "unknown_key", b'{"image": "a.png", "x": 3, "y": 4, "class": 1, "z": 0}\n')
    write("clicks", "malformed", b'{"image": "a.png", "x": 3,\n')
    for name in ("default.yaml", "production.example.yaml"):
        write("config", name, (ROOT / "config" / name).read_bytes())
    write("config", "overrides", b"model:\n  resolution: 128\n  num_classes: 4\n"
          b"trainer:\n  batch_size: 2\nkafka:\n  topics: {images: im}\n")
    write("config", "typo", b"modle:\n  resolution: 64\n")
    write("config", "anchors", b"a: &x {b: 1}\nmodel: *x\n")
    for kind in (pb.Query.KIND_MASK, pb.Query.KIND_IMAGE, pb.Query.KIND_STATUS,
                 pb.Query.KIND_METRICS):
        query = pb.Query(kind=kind, dataset="ds", image_id="a")
        write("query", f"kind_{kind}", query.SerializeToString())
    write("query", "empty_image", pb.Query(kind=pb.Query.KIND_IMAGE).SerializeToString())
    write("query", "garbage", b"\xff\xff\xff\xff\xff")


if __name__ == "__main__":
    main()
