#!/usr/bin/env python3
"""`tinct batch --ray` against plain `tinct batch` on the same photos, in one run: wall time, their
ratio (issue 21's target: --ray within 15 % of plain on a 2-core machine with a local Ray of 2 CPUs),
throughput, the driver's peak RSS, and whether the outputs are byte-identical. A script, not a test.

The photos are corpus photos made black and white and upscaled to about 1 MP, in a temporary folder.

    python bench/bench_ray.py [--count 200] [--mp 1] [--actors N]
"""

import argparse
import filecmp
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.path.join(os.path.dirname(ROOT), "shared", "corpus")
TARGET_RATIO = 1.15

# The driver in a process of its own, reporting its own peak RSS (Ray's daemons and actors are other
# processes): what the machine that submits a job of millions needs.
DRIVER = ("import resource, sys; from engine.cli import main; rc = main(sys.argv[1:]); "
          "print('PEAK_RSS_KB %d' % resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr); "
          "sys.exit(rc)")


def make_photos(folder, count, mp):
    """`count` black-and-white JPEGs of about `mp` megapixels, from the first corpus photos."""
    from PIL import Image

    names = sorted(os.listdir(CORPUS))[:count]
    if len(names) < count:
        sys.exit("bench_ray: %s has only %d photos" % (CORPUS, len(names)))
    for name in names:
        with Image.open(os.path.join(CORPUS, name)) as im:
            gray = im.convert("L")
        scale = (mp * 1e6 / (gray.width * gray.height)) ** 0.5
        gray = gray.resize((round(gray.width * scale), round(gray.height * scale)), Image.BICUBIC)
        gray.save(os.path.join(folder, os.path.splitext(name)[0] + ".jpg"), quality=92)


def run_tinct(argv):
    """(seconds, driver peak RSS in MB, last stdout lines) of one `tinct` command."""
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("RAY_ADDRESS", None)  # a local Ray of this machine's CPUs
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", DRIVER] + argv, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit("bench_ray: tinct %s failed:\n%s" % (" ".join(argv), proc.stderr[-2000:]))
    rss_kb = int(proc.stderr.rsplit("PEAK_RSS_KB", 1)[1].split()[0])
    return seconds, rss_kb / 1024.0, proc.stdout.strip().splitlines()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=200)
    ap.add_argument("--mp", type=float, default=1.0)
    ap.add_argument("--actors", help="--ray-actors for the Ray run (default: one per CPU)")
    opts = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="tinct-bench-ray-") as tmp:
        photos = os.path.join(tmp, "photos")
        os.makedirs(photos)
        make_photos(photos, opts.count, opts.mp)
        plain_s, plain_rss, _ = run_tinct(["batch", photos, os.path.join(tmp, "plain")])
        ray_argv = ["batch", photos, os.path.join(tmp, "ray"), "--ray"]
        if opts.actors:
            ray_argv += ["--ray-actors", opts.actors]
        ray_s, ray_rss, ray_lines = run_tinct(ray_argv)
        outputs = sorted(os.listdir(os.path.join(tmp, "plain")))
        _, mismatch, errors = filecmp.cmpfiles(os.path.join(tmp, "plain"), os.path.join(tmp, "ray"), outputs,
                                               shallow=False)
    ratio = ray_s / plain_s
    print("photos: %d of about %.1f MP, %d CPUs" % (opts.count, opts.mp, os.cpu_count()))
    print("plain tinct batch: %.1f s (%.2f photos/s), driver peak RSS %.0f MB" % (
        plain_s, opts.count / plain_s, plain_rss))
    print("tinct batch --ray: %.1f s (%.2f photos/s), driver peak RSS %.0f MB, Ray start and stop included"
          % (ray_s, opts.count / ray_s, ray_rss))
    print("  its own line: %s" % " / ".join(l for l in ray_lines if "photos/s" in l))
    print("ratio --ray / plain: %.3f (target <= %.2f: %s)" % (ratio, TARGET_RATIO,
                                                             "met" if ratio <= TARGET_RATIO else "NOT met"))
    print("byte-identical outputs: %d of %d" % (len(outputs) - len(mismatch) - len(errors), len(outputs)))


if __name__ == "__main__":
    main()
