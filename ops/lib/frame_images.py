"""ops/lib/frame_images.py SRC DEST [SEED] — a data set's images inside a black frame.

Each image of SRC/images (8- or 16-bit gray PNG, or RGB) is placed on a black canvas 2 to 3 times
its size each way (drawn per image from SEED, default 1) at a random offset, as an ultrasound
sector or a dermoscopy field sits in its surround; SRC/truth masks are framed the same way (with
background) and SRC/clicks.jsonl is moved with its images. The image's own darkest value is kept
above black, so the frame is darker than anything in the image. Writes DEST/images, DEST/truth
and DEST/clicks.jsonl; DEST is made anew.
"""
import json
import os
import random
import shutil
import sys

import numpy as np
from PIL import Image


def main() -> None:
    src, dest = sys.argv[1], sys.argv[2]
    rng = random.Random(int(sys.argv[3]) if len(sys.argv) > 3 else 1)
    shutil.rmtree(dest, ignore_errors=True)
    os.makedirs(f"{dest}/images")
    has_truth = os.path.isdir(f"{src}/truth")
    if has_truth:
        os.makedirs(f"{dest}/truth")
    offsets = {}
    for name in sorted(os.listdir(f"{src}/images")):
        image = Image.open(f"{src}/images/{name}")
        pixels = np.array(image)
        height, width = pixels.shape[:2]
        canvas_w = int(width * rng.uniform(2, 3))
        canvas_h = int(height * rng.uniform(2, 3))
        x0 = rng.randrange(canvas_w - width + 1)
        y0 = rng.randrange(canvas_h - height + 1)
        offsets[name] = (x0, y0)
        # The image's own values, lifted by one step so that none is as dark as the frame. PIL
        # reads a 16-bit PNG as 32-bit integers (mode I): its values are 16-bit.
        dtype = np.uint8 if pixels.dtype == np.uint8 else np.uint16
        lifted = np.minimum(pixels.astype(np.int64) + 1, np.iinfo(dtype).max).astype(dtype)
        framed = np.zeros((canvas_h, canvas_w) + pixels.shape[2:], dtype=dtype)
        framed[y0:y0 + height, x0:x0 + width] = lifted
        Image.fromarray(framed).save(f"{dest}/images/{name}")
        if has_truth:
            mask = np.array(Image.open(f"{src}/truth/{name}"))
            framed_mask = np.zeros((canvas_h, canvas_w), dtype=np.uint8)
            framed_mask[y0:y0 + height, x0:x0 + width] = mask
            Image.fromarray(framed_mask).save(f"{dest}/truth/{name}")
    if os.path.exists(f"{src}/clicks.jsonl"):
        with open(f"{src}/clicks.jsonl") as inp, open(f"{dest}/clicks.jsonl", "w") as out:
            for line in inp:
                if not line.strip():
                    continue
                click = json.loads(line)
                x0, y0 = offsets[click["image"]]
                click["x"] += x0
                click["y"] += y0
                out.write(json.dumps(click) + "\n")


if __name__ == "__main__":
    main()
