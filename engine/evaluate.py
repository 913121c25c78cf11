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
import sys
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


def scale_short_side(im, side):
    """A PIL image with its short side scaled to `side` (Lanczos)."""
    w, h = im.size
    s = side / float(min(w, h))
    return im.resize((max(side, int(round(w * s))), max(side, int(round(h * s)))), Image.LANCZOS)


def center_crop(rgb, side=CROP):
    """Scale the short side to `side` (Lanczos) and take the central square."""
    im = scale_short_side(Image.fromarray(rgb), side)
    nw, nh = im.size
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
    """ab (H, W, 2) for one method on one crop (instances: the pipeline's instance mode, None = its default)."""
    if method == "gray":
        return np.zeros(l.shape + (2,), np.float32)
    if method == "levin":
        from .levin import levin_colorize

        return levin_colorize(l, hint_ab, mask)
    kwargs = {"instances": instances} if instances else {}
    return colorizer.colorize(gray_rgb, hints=rgba if mask.any() else None, size=size, **kwargs).ab


def method_rows(methods, instance_modes):
    """Row names: "tinct" becomes one row per instance mode ("tinct/auto", "tinct/none")."""
    rows = []
    for m in methods:
        if m == "tinct" and instance_modes:
            rows += [("tinct/%s" % mode, m, mode) for mode in instance_modes]
        else:
            rows.append((m, m, None))
    return rows


def count_objects(colorizer, gray_rgb):
    """Objects auto mode would fuse on this crop: detector boxes large enough, at most the max instances."""
    from .detect import MAX_INSTANCES
    from .instance_aware import plan_auto

    fused = colorizer.fused
    return plan_auto(gray_rgb, colorizer.detector, fused.max_instances if fused else MAX_INSTANCES).used


def run_eval(folder, hint_counts=DEFAULT_HINTS, limit=None, methods=METHODS, colorizer=None, seed=0,
             size=CROP, progress=True, instances=None, sheet_rows=0):
    """Mean PSNR per method and number of hints: {"methods": {m: {n: dB}}, "photos": k, ...}.

    folder: a folder of photos, or a list of photo paths (training's held-out photos).

    instances: None (the pipeline's default mode) or a list of modes ("auto", "none"): each
    becomes its own row, and the results are also split by the number of objects the
    detector finds on each crop ("groups": two or more / fewer). sheet_rows: keep up to this
    many multi-object photos' automatic results per mode (0 hints) for `instance_sheet`.
    """
    paths = list(folder) if isinstance(folder, (list, tuple)) else list_images(folder)
    if not paths:
        raise TinctError("%s: no images to evaluate" % (folder or "an empty list"))
    if limit:
        paths = paths[:limit]
    if ("tinct" in methods or instances) and colorizer is None:
        from .pipeline import Colorizer

        colorizer = Colorizer()
    rows = method_rows(methods, instances)
    scores = {r: {n: [] for n in hint_counts} for r, _, _ in rows}
    objects, sheet = [], []
    from tqdm import tqdm

    for i, path in enumerate(tqdm(paths, desc="eval", unit="photo", disable=not progress)):
        with Image.open(path) as im:
            truth = center_crop(np.asarray(im.convert("RGB")))
        lab = rgb_to_lab(truth)
        l = lab[..., 0]
        gray_rgb = lab_to_srgb_int(l, np.zeros(l.shape + (2,), np.float32))
        if instances:
            objects.append(count_objects(colorizer, gray_rgb))
        renders = {}
        for n in hint_counts:
            rgba, hint_ab, mask = sample_hints(lab, n, _seed(i, n, seed))
            for r, m, mode in rows:
                if m == "gray" and n:
                    scores[r][n].append(scores[r][0][-1] if 0 in hint_counts else
                                        psnr(lab_to_srgb_int(l, np.zeros_like(hint_ab)), truth))
                    continue
                ab = predict(m, gray_rgb, l, rgba, hint_ab, mask, colorizer, size, mode)
                out = lab_to_srgb_int(l, ab)
                scores[r][n].append(psnr(out, truth))
                if n == 0 and mode:
                    renders[mode] = out
        if instances and objects[-1] >= 2 and len(sheet) < sheet_rows and renders:
            sheet.append((os.path.basename(path), objects[-1], renders, truth))
    results = {"photos": len(paths), "folder": folder if isinstance(folder, str) else None, "hints": list(hint_counts),
               "methods": {r: {n: float(np.mean(v)) for n, v in d.items()} for r, d in scores.items()},
               "per_photo": {r: {n: [round(x, 3) for x in v] for n, v in d.items()} for r, d in scores.items()},
               "files": [os.path.basename(p) for p in paths]}
    if instances:
        results["objects"] = objects
        results["groups"] = group_means(scores, objects)
        results["sheet"] = sheet
    return results


def group_means(scores, objects, min_objects=2):
    """Means over photos with >= min_objects detected objects, and over the others."""
    multi = np.asarray(objects) >= min_objects
    groups = {}
    for name, sel in (("multi", multi), ("others", ~multi)):
        groups[name] = {"photos": int(sel.sum()), "methods": {
            r: {n: (float(np.mean(np.asarray(v)[sel])) if sel.any() else float("nan")) for n, v in d.items()}
            for r, d in scores.items()}}
    return groups


def _table(title, methods, hints):
    width = max([8] + [len(m) + 2 for m in methods])
    head = "%-*s" % (width, "method") + "".join("%8s" % ("%d" % n) for n in hints)
    lines = [title, head, "-" * len(head)]
    for m, row in methods.items():
        lines.append("%-*s" % (width, m) + "".join("%8.2f" % row[n] for n in hints))
    return lines


def format_table(results):
    hints = results["hints"]
    lines = _table("PSNR (dB) on %d photos, 256x256 center crops, by number of 5x5 hints" % results["photos"],
                   results["methods"], hints)
    for name, title in (("multi", "with two or more detected objects"), ("others", "with fewer than two objects")):
        g = results.get("groups", {}).get(name)
        if g and g["photos"]:
            lines += [""] + _table("PSNR (dB) on the %d photos %s" % (g["photos"], title), g["methods"], hints)
    return "\n".join(lines)


def instance_sheet(rows, out_png):
    """A PNG grid, one row per multi-object photo: input / each instance mode / truth."""
    from .contact_sheet import CELL, LABEL_H, _label
    from PIL import ImageDraw

    if not rows:
        raise TinctError("no photo with two or more detected objects for the sheet")
    modes = list(rows[0][2])
    titles = ["input"] + ["instances %s" % m for m in modes] + ["truth"]
    sheet = Image.new("RGB", (CELL * len(titles), (CELL + LABEL_H) * len(rows)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for r, (name, count, renders, truth) in enumerate(rows):
        l = rgb_to_lab(truth)[..., 0]
        cells = [lab_to_srgb_int(l, np.zeros(l.shape + (2,), np.float32))] + [renders[m] for m in modes] + [truth]
        y = r * (CELL + LABEL_H)
        for c, (title, img) in enumerate(zip(titles, cells)):
            _label(draw, c * CELL, y, title + ("  %s (%d objects)" % (name[:20], count) if c == 0 else ""))
            sheet.paste(Image.fromarray(img), (c * CELL, y + LABEL_H))
    sheet.save(out_png)
    return out_png


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
    p.add_argument("--instances", type=_mode_list, metavar="MODE[,MODE]",
                   help="instance-aware modes to compare, e.g. auto,none: one tinct row each, and the "
                        "numbers again on photos with two or more detected objects and on the others "
                        "(default: the pipeline's default mode, one row)")
    p.add_argument("--fused-model", metavar="ONNX", help="evaluate another instance-aware (fused) ONNX model")
    p.add_argument("--sheet", metavar="PNG", help="with --instances: a contact sheet of input / each mode / "
                                                   "truth on up to 8 multi-object photos")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", metavar="PATH", help="also write the numbers (and per-photo scores) as JSON")
    p.set_defaults(func=run)


def _mode_list(text):
    modes = tuple(m.strip() for m in text.split(",") if m.strip())
    if not modes or any(m not in ("auto", "none") for m in modes):
        raise argparse.ArgumentTypeError("expected auto, none or auto,none")
    return modes


def run(args):
    if not os.path.isdir(args.dir):
        raise TinctError("%s: not a folder" % args.dir)
    methods = tuple(m.strip() for m in args.methods.split(",") if m.strip())
    bad = [m for m in methods if m not in METHODS]
    if bad:
        raise TinctError("unknown method %s; choose from %s" % (", ".join(bad), ", ".join(METHODS)))
    colorizer = None
    if "tinct" in methods or args.instances:
        from .pipeline import Colorizer

        colorizer = Colorizer(model_path=args.model, fused_model_path=args.fused_model)
    if args.instances and "auto" in args.instances and "tinct" in methods and not colorizer.fused_model_path:
        raise TinctError("--instances auto needs an instance-aware model: none is installed; pass --fused-model")
    if args.instances and "tinct" in methods and colorizer.fused is not None:
        from .instance_aware import pairing_problem

        problem = pairing_problem(colorizer.runtime.metadata, colorizer.fused.runtime.metadata)
        if problem:
            print("warning: " + problem, file=sys.stderr)
    if args.sheet and not args.instances:
        raise TinctError("--sheet needs --instances (for example --instances auto,none)")
    results = run_eval(args.dir, args.hints, args.limit, methods, colorizer, args.seed, args.size,
                       instances=args.instances, sheet_rows=8 if args.sheet else 0)
    print(format_table(results))
    sheet = results.pop("sheet", None)
    if args.sheet:
        print("wrote %s" % instance_sheet(sheet, args.sheet))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0
