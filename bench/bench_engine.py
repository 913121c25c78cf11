#!/usr/bin/env python3
"""Engine speed and memory: warm colorization at 0.25/1/4/12 MP, peak RSS, the
model alone at 256x256, and the ratio against Levin at 1 MP. A script, not a test:
it prints figures next to the targets of the engine-core issue.

    python bench/bench_engine.py [--sizes 0.25,1,4,12] [--repeat 3]
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
SAMPLE = os.path.join(ROOT, "examples", "great_wall_bw.png")
TARGETS = {1.0: 1.0, 12.0: 5.0}


def synth_photo(mp):
    """A natural-looking gray photo of about `mp` megapixels (the bundled sample, upscaled)."""
    from PIL import Image

    im = Image.open(SAMPLE).convert("L")
    w = int(round((mp * 1e6 * im.width / im.height) ** 0.5))
    h = int(round(mp * 1e6 / w))
    return np.asarray(im.resize((w, h), Image.BICUBIC))


def one_size(mp, repeat, out_dir):
    """Runs in a fresh process so its peak RSS belongs to this size alone."""
    from engine.pipeline import Colorizer

    photo = synth_photo(mp)
    c = Colorizer()
    c.colorize(photo[:256, :256]).render()  # warm: model loaded, session initialized
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        c.colorize(photo).save_png(os.path.join(out_dir, "bench.png"))
        times.append(time.perf_counter() - t)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    return {"mp": mp, "shape": list(photo.shape), "best_s": min(times), "median_s": float(np.median(times)),
            "peak_rss_mb": rss, "device": c.device}


def model_alone(repeat=10):
    """The network on a 256x256 grid, encoder included (its feature cache emptied before each
    run): everything between the working grid and its ab."""
    from engine.pipeline import Colorizer

    c = Colorizer()
    grid = c.prepare(synth_photo(0.1)[:256, :256])
    c.run_network(grid)
    ts = []
    for _ in range(repeat):
        if c.runtime.features:
            c.runtime.features.entries.clear()
        t = time.perf_counter()
        c.run_network(grid)
        ts.append(time.perf_counter() - t)
    return min(ts), float(np.median(ts)), c.device


def hint_edit(repeat=10):
    """A hint edit at 256x256, warm: the user adds one more 3-pixel dot and re-runs on the same photo.
    The encoder's features and the propagation's factorizations are kept per photo, so this is the
    hint encoding, the propagation update and the head."""
    from engine.pipeline import Colorizer

    photo = synth_photo(0.1)[:256, :256]
    c = Colorizer()
    rng = np.random.default_rng(0)
    hints = np.zeros((256, 256, 4), np.uint8)
    ts = []
    for i in range(repeat + 2):
        y, x = rng.integers(0, 253, 2)
        hints[y:y + 3, x:x + 3] = (*rng.integers(0, 256, 3), 255)
        t = time.perf_counter()
        c.run_network(c.prepare(photo, hints))
        if i >= 2:  # the first runs factorize and encode: that is a new photo, not an edit
            ts.append(time.perf_counter() - t)
    return min(ts), float(np.median(ts)), c.runtime.feature_cache_hits


def levin_ratio(repeat=1):
    """Tinct (net, with hints, through the pipeline) vs Levin solved at full 1 MP resolution."""
    from engine.color import gray_to_l
    from engine.levin import levin_colorize
    from engine.pipeline import Colorizer

    photo = synth_photo(1.0)
    h, w = photo.shape
    hints = np.zeros((h, w, 4), np.uint8)
    rng = np.random.default_rng(0)
    for _ in range(10):
        y, x = rng.integers(0, h - 5), rng.integers(0, w - 5)
        hints[y:y + 5, x:x + 5] = (*rng.integers(0, 256, 3), 255)
    c = Colorizer()
    c.colorize(photo[:256, :256]).render()
    t = time.perf_counter()
    c.colorize(photo, hints=hints).render()
    tinct_s = time.perf_counter() - t
    from engine.hints import encode_local_hints

    ab, mask = encode_local_hints(hints, h, w)
    t = time.perf_counter()
    levin_colorize(gray_to_l(photo), ab, mask > 0)
    levin_s = time.perf_counter() - t
    return tinct_s, levin_s


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="0.25,1,4,12", help="megapixels, comma-separated")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--skip-levin", action="store_true", help="skip the (slow) Levin 1 MP solve")
    ap.add_argument("--one", type=float, help=argparse.SUPPRESS)
    ap.add_argument("--out", default="/tmp", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one_size(args.one, args.repeat, args.out)))
        return
    print("Tinct engine benchmark (%d CPU cores)" % os.cpu_count())
    best, med, device = model_alone()
    print("model alone (encoder + head) at 256x256 on %s: best %.0f ms, median %.0f ms   (target <= 150 ms) %s"
          % (device, best * 1e3, med * 1e3, "OK" if best <= 0.15 else "MISSED"))
    best, med, hits = hint_edit()
    print("hint edit at 256x256 (one more dot; cached features, propagation update, head): best %.0f ms, "
          "median %.0f ms   (target <= 150 ms) %s   [features reused %d times]"
          % (best * 1e3, med * 1e3, "OK" if med <= 0.15 else "MISSED", hits))
    print("%8s %12s %10s %10s %12s  target" % ("MP", "shape", "best s", "median s", "peak RSS MB"))
    for mp in [float(s) for s in args.sizes.split(",")]:
        r = subprocess.run([sys.executable, __file__, "--one", str(mp), "--repeat", str(args.repeat)],
                           capture_output=True, text=True, check=True)
        d = json.loads(r.stdout.strip().splitlines()[-1])
        target = TARGETS.get(mp)
        verdict = ""
        if target:
            verdict = "<= %.1f s %s" % (target, "OK" if d["best_s"] <= target else "MISSED")
            if mp == 12.0:
                verdict += ", RSS <= 2048 MB %s" % ("OK" if d["peak_rss_mb"] <= 2048 else "MISSED")
        print("%8.2f %12s %10.2f %10.2f %12.0f  %s" % (mp, "x".join(map(str, d["shape"])), d["best_s"],
                                                       d["median_s"], d["peak_rss_mb"], verdict))
    if not args.skip_levin:
        tinct_s, levin_s = levin_ratio()
        print("1 MP with 10 hints: Tinct %.2f s (<= 1.5 s %s; it includes spreading the hints along edges "
              "at half the working grid), Levin (full-resolution solve) %.2f s, ratio Tinct/Levin %.3f"
              % (tinct_s, "OK" if tinct_s <= 1.5 else "MISSED", levin_s, tinct_s / levin_s))


if __name__ == "__main__":
    main()
