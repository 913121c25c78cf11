"""`tinct eval`: the PSNR sweep of Zhang et al. 2017 over numbers of hints.

Protocol: each photo is scaled so its short side is 256 and center-cropped to
256x256. N hints are 5x5 patches revealing the true mean color of the patch, at
positions drawn from a normal distribution around the center (sigma = 64 px),
with a seed fixed per (photo, N) so every method sees the same hints. The method
gets the photo's lightness only; its output (the photo's L + predicted ab) is
compared with the truth in 8-bit RGB.
"""

import argparse
import json
import os
import zlib

import numpy as np
from PIL import Image

from . import TinctError
from .color import lab_to_rgb, lab_to_srgb_int, quantize, rgb_to_lab
from .train.data import list_images

CROP = 256
PATCH = 5
DEFAULT_HINTS = (0, 1, 2, 5, 10, 20, 50, 100)
METHODS = ("tinct", "gray", "levin")


def center_crop(rgb, side=CROP):
    """Scale the short side to `side` (Lanczos) and take the central square."""
    im = Image.fromarray(rgb)
    w, h = im.size
    s = side / float(min(w, h))
    nw, nh = max(side, int(round(w * s))), max(side, int(round(h * s)))
    im = im.resize((nw, nh), Image.LANCZOS)
    x, y = (nw - side) // 2, (nh - side) // 2
    return np.asarray(im.crop((x, y, x + side, y + side)))


def sample_hints(lab, n, seed):
    """n hint patches -> (RGBA hint image for the pipeline, ab (H, W, 2), mask (H, W))."""
    h, w = lab.shape[:2]
    rng = np.random.default_rng(seed)
    hint_ab = np.zeros((h, w, 2), np.float32)
    mask = np.zeros((h, w), bool)
    rgba = np.zeros((h, w, 4), np.uint8)
    for _ in range(n):
        cy, cx = rng.normal((h / 2.0, w / 2.0), (h / 4.0, w / 4.0))
        y = int(np.clip(round(cy) - PATCH // 2, 0, h - PATCH))
        x = int(np.clip(round(cx) - PATCH // 2, 0, w - PATCH))
        patch = lab[y:y + PATCH, x:x + PATCH].reshape(-1, 3).mean(0)
        hint_ab[y:y + PATCH, x:x + PATCH] = patch[1:]
        mask[y:y + PATCH, x:x + PATCH] = True
        # the hint's color as a user would paint it: the patch's mean Lab, in sRGB
        rgba[y:y + PATCH, x:x + PATCH, :3] = quantize(lab_to_rgb(patch[None]))[0]
        rgba[y:y + PATCH, x:x + PATCH, 3] = 255
    return rgba, hint_ab, mask


def psnr(a, b):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10.0 * np.log10(255.0 ** 2 / mse)


def _seed(index, n, base):
    return zlib.crc32(("%d:%d:%d" % (base, index, n)).encode())


def predict(method, gray_rgb, l, rgba, hint_ab, mask, colorizer, size, instances=None):
    """ab (H, W, 2) for one method on one crop."""
    if method == "gray":
        return np.zeros(l.shape + (2,), np.float32)
    if method == "levin":
        from .levin import levin_colorize

        return levin_colorize(l, hint_ab, mask)
    kwargs = {"instances": instances} if instances else {}
    return colorizer.colorize(gray_rgb, hints=rgba if mask.any() else None, size=size, **kwargs).ab


def run_eval(folder, hint_counts=DEFAULT_HINTS, limit=None, methods=METHODS, colorizer=None, seed=0,
             size=CROP, progress=True, instances=None):
    """Mean PSNR per method and number of hints: {"methods": {m: {n: dB}}, "photos": k, ...}."""
    paths = list_images(folder)
    if not paths:
        raise TinctError("%s: no images to evaluate" % folder)
    if limit:
        paths = paths[:limit]
    if "tinct" in methods and colorizer is None:
        from .pipeline import Colorizer

        colorizer = Colorizer()
    scores = {m: {n: [] for n in hint_counts} for m in methods}
    from tqdm import tqdm

    for i, path in enumerate(tqdm(paths, desc="eval", unit="photo", disable=not progress)):
        with Image.open(path) as im:
            truth = center_crop(np.asarray(im.convert("RGB")))
        lab = rgb_to_lab(truth)
        l = lab[..., 0]
        gray_rgb = lab_to_srgb_int(l, np.zeros(l.shape + (2,), np.float32))
        for n in hint_counts:
            rgba, hint_ab, mask = sample_hints(lab, n, _seed(i, n, seed))
            for m in methods:
                if m == "gray" and n:
                    scores[m][n].append(scores[m][0][-1] if 0 in hint_counts else
                                        psnr(lab_to_srgb_int(l, np.zeros_like(hint_ab)), truth))
                    continue
                ab = predict(m, gray_rgb, l, rgba, hint_ab, mask, colorizer, size, instances)
                scores[m][n].append(psnr(lab_to_srgb_int(l, ab), truth))
    return {"photos": len(paths), "folder": folder, "hints": list(hint_counts),
            "methods": {m: {n: float(np.mean(v)) for n, v in d.items()} for m, d in scores.items()},
            "per_photo": {m: {n: [round(x, 3) for x in v] for n, v in d.items()} for m, d in scores.items()},
            "files": [os.path.basename(p) for p in paths]}


def format_table(results):
    hints = results["hints"]
    head = "%-8s" % "method" + "".join("%8s" % ("%d" % n) for n in hints)
    lines = ["PSNR (dB) on %d photos, 256x256 center crops, by number of 5x5 hints" % results["photos"], head,
             "-" * len(head)]
    for m, row in results["methods"].items():
        lines.append("%-8s" % m + "".join("%8.2f" % row[n] for n in hints))
    return "\n".join(lines)


def _int_list(text):
    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError("expected numbers separated by commas, like 0,1,10")


def register(sub):
    p = sub.add_parser(
        "eval", help="measure colorization quality (PSNR) against gray and Levin baselines",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=__doc__,
        epilog="""example:
  tinct eval ../shared/val --hints 0,10 --limit 20

Numbers are comparable only with the same photos, hints and seed.""")
    p.add_argument("dir", help="folder of color photos (the truth); Tinct sees them in black and white")
    p.add_argument("--hints", type=_int_list, default=DEFAULT_HINTS, metavar="N,N,...",
                   help="numbers of hints to sweep (default 0,1,2,5,10,20,50,100)")
    p.add_argument("--limit", type=int, metavar="N", help="only the first N photos (sorted by name)")
    p.add_argument("--methods", default=",".join(METHODS), help="comma-separated: tinct, gray, levin")
    p.add_argument("--size", type=int, default=CROP, help="Tinct's working resolution (default 256)")
    p.add_argument("--model", help="evaluate another ONNX model")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", metavar="PATH", help="also write the numbers (and per-photo scores) as JSON")
    p.set_defaults(func=run)


def run(args):
    if not os.path.isdir(args.dir):
        raise TinctError("%s: not a folder" % args.dir)
    methods = tuple(m.strip() for m in args.methods.split(",") if m.strip())
    bad = [m for m in methods if m not in METHODS]
    if bad:
        raise TinctError("unknown method %s; choose from %s" % (", ".join(bad), ", ".join(METHODS)))
    colorizer = None
    if "tinct" in methods:
        from .pipeline import Colorizer

        colorizer = Colorizer(model_path=args.model)
    results = run_eval(args.dir, args.hints, args.limit, methods, colorizer, args.seed, args.size)
    print(format_table(results))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0
