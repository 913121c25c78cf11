#!/usr/bin/env python3
"""Damage detection's cost on a 12 MP scan (4000 x 3000), the issue's target being at most 5 s
on this project's 2-core CPU: the whole of `Detector.detect` (lightness of each window, the
network, the threshold), for an 8-bit RGB and an 8-bit gray photo. A script, not a test.

    python bench/bench_detect_damage.py [--mp 12] [--repeat 3] [--threads N]

The photo is an example photo scaled up with noise added, so the network sees texture
everywhere (its cost does not depend on the content, only on the pixel count).
"""

import argparse
import json
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def photo(mp, gray):
    from PIL import Image

    w = int(round((mp * 1e6 * 4 / 3) ** 0.5))
    h = int(round(w * 3 / 4))
    im = Image.open(os.path.join(ROOT, "examples", "great_wall_bw.png")).convert("L" if gray else "RGB")
    arr = np.asarray(im.resize((w, h), Image.BICUBIC)).astype(np.int16)
    arr = arr + np.random.default_rng(0).integers(-6, 7, arr.shape, dtype=np.int16)
    return np.clip(arr, 0, 255).astype(np.uint8)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mp", type=float, default=12.0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, help="onnxruntime threads (default: its own, all cores)")
    ap.add_argument("--json", help="also write the timings here")
    args = ap.parse_args()

    from engine.detect_damage import Detector

    det = Detector(threads=args.threads)
    det.detect(photo(0.3, False))  # load the model and warm the session
    out = {"mp": args.mp, "threads": args.threads, "cpu_count": os.cpu_count()}
    for gray in (False, True):
        p = photo(args.mp, gray)
        times = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            det.detect(p)
            times.append(time.perf_counter() - t0)
        key = "gray" if gray else "rgb"
        out[key] = {"shape": list(p.shape), "median_s": float(np.median(times)), "all_s": [round(t, 3) for t in times]}
        print("%s %dx%d: median %.2f s (%s)" % (key, p.shape[1], p.shape[0], np.median(times),
                                                ", ".join("%.2f" % t for t in times)))
    print("load average while measuring: %s" % (os.getloadavg(),))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
