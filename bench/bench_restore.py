#!/usr/bin/env python3
"""Damage restoration's cost: restoring a scanned print's damage before colorizing, at
1 and 12 MP, with light damage (a few scratches and dust) and heavy damage (scratches,
dust, tears and folds all over), and the peak RSS. A script, not a test.

    python bench/bench_restore.py [--sizes 1,12] [--repeat 2]

Restoration runs only on the 512 x 512 tiles that hold damage, so its cost follows the
damage, not the photo's size. Each size runs in a fresh process so its peak RSS is its own.
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
sys.path.insert(0, os.path.join(ROOT, "bench"))


def damage_mask(h, w, heavy, seed=0):
    """Simulated damage drawn at the photo's size (engine/damage.py), True = damaged."""
    from PIL import Image, ImageDraw

    from engine.damage import DamageSimulator

    sim = DamageSimulator(np.random.default_rng(seed))
    im = Image.new("L", (w, h), 255)
    draw = ImageDraw.Draw(im)
    for _ in range(12 if heavy else 3):
        sim._scratch(draw, h, w)
    sim._specks(draw, h, w)
    if heavy:
        for _ in range(6):
            sim._patch(draw, h, w)
        sim._fold(draw, h, w)
        sim._fold(draw, h, w)
    return np.asarray(im) < 128


def one_size(mp, repeat):
    from bench_engine import synth_photo

    from engine.restore import Restorer, damaged_tiles

    photo = synth_photo(mp)
    r = Restorer()
    r.restore(photo[:300, :300], np.eye(300, dtype=bool))  # warm: model loaded
    out = {"mp": mp, "shape": list(photo.shape)}
    for name, heavy in (("light", False), ("heavy", True)):
        damage = damage_mask(*photo.shape, heavy)
        times = []
        for _ in range(repeat):
            t = time.perf_counter()
            r.restore(photo, damage)
            times.append(time.perf_counter() - t)
        out[name] = {"best_s": min(times), "damaged_pct": 100.0 * damage.mean(),
                     "tiles": len(list(damaged_tiles(damage)))}
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1,12", help="megapixels, comma-separated")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--one", type=float, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one_size(args.one, args.repeat)))
        return
    print("Tinct restoration benchmark (%d CPU cores)" % os.cpu_count())
    print("%6s %12s  %-34s %-34s %12s" % ("MP", "shape", "light damage", "heavy damage", "peak RSS MB"))
    for mp in [float(s) for s in args.sizes.split(",")]:
        r = subprocess.run([sys.executable, __file__, "--one", str(mp), "--repeat", str(args.repeat)],
                           capture_output=True, text=True, check=True)
        d = json.loads(r.stdout.strip().splitlines()[-1])
        cell = lambda k: "%.2f s (%.2f %% damaged, %d tiles)" % (d[k]["best_s"], d[k]["damaged_pct"], d[k]["tiles"])
        print("%6.2f %12s  %-34s %-34s %12.0f" % (mp, "x".join(map(str, d["shape"])), cell("light"), cell("heavy"),
                                                 d["peak_rss_mb"]))


if __name__ == "__main__":
    main()
