#!/usr/bin/env python3
"""Hint propagation speed (engine.levin.propagate_hints): the first call on a photo, and repeat
calls on the same L as in an interactive edit: the same dots recolored, one more dot, and a
wholly new set of dots. A script, not a test: it prints milliseconds (best of --repeat).

    python bench/bench_propagation.py [--sizes 256x256,512x512] [--hints 1,10,100] [--repeat 5]
"""

import argparse
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
SAMPLE = os.path.join(ROOT, "examples", "great_wall_bw.png")


def photo_l(h, w):
    from PIL import Image

    return np.asarray(Image.open(SAMPLE).convert("L").resize((w, h), Image.BICUBIC), np.float32) / 2.55


def dots(h, w, n, rng, size=5):
    ab, mask = np.zeros((h, w, 2), np.float32), np.zeros((h, w), np.float32)
    for _ in range(n):
        y, x = rng.integers(0, h - size + 1), rng.integers(0, w - size + 1)
        ab[y:y + size, x:x + size], mask[y:y + size, x:x + size] = rng.uniform(-100, 100, 2), 1
    return ab, mask


def best_ms(fn, repeat):
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1000 * min(times)


def main():
    from engine.levin import clear_cache, propagate_hints

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="256x256,256x384,512x512")
    ap.add_argument("--hints", default="1,10,100")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    print("%-9s %5s %8s %9s %9s %9s" % ("size", "dots", "first", "recolor", "+1 dot", "new dots"))
    for size in args.sizes.split(","):
        h, w = map(int, size.split("x"))
        l = photo_l(h, w)
        for n in map(int, args.hints.split(",")):
            ab, mask = dots(h, w, n, rng)
            more_ab, more_mask = dots(h, w, 1, rng)
            more_ab, more_mask = np.where(more_mask[..., None] > 0, more_ab, ab), np.maximum(mask, more_mask)
            new_sets = [dots(h, w, n, rng) for _ in range(args.repeat)]

            def first():
                clear_cache()
                propagate_hints(l, ab, mask)

            first_ms = best_ms(first, args.repeat)
            propagate_hints(l, ab, mask)  # the photo's factorized hint set, kept by the next two
            recolor_ms = best_ms(lambda: propagate_hints(l, -ab, mask), args.repeat)
            plus_ms = best_ms(lambda: propagate_hints(l, more_ab, more_mask), args.repeat)
            it = iter(new_sets)
            new_ms = best_ms(lambda: propagate_hints(l, *next(it)), args.repeat)
            print("%-9s %5d %8.1f %9.1f %9.1f %9.1f" % (size, n, first_ms, recolor_ms, plus_ms, new_ms))


if __name__ == "__main__":
    main()
