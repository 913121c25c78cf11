"""`tinct contact-sheet`: rows of input / automatic / 10 hints / truth, for the
model card and for eyeballing a model: PSNR hides sepia, a picture does not."""

import argparse
import os

import numpy as np
from PIL import Image, ImageDraw

from . import TinctError
from .color import lab_to_srgb_int, rgb_to_lab
from .evaluate import PATCH, _seed, center_crop, sample_hints
from .train.data import list_images

CELL = 256
LABEL_H = 18


def _label(draw, x, y, text):
    draw.rectangle([x, y, x + CELL - 1, y + LABEL_H - 1], fill=(255, 255, 255))
    draw.text((x + 4, y + 3), text, fill=(0, 0, 0))


def _outline_hints(img, mask):
    """Draw each hint patch as an outlined square so readers see where the dots were."""
    draw = ImageDraw.Draw(img)
    padded = np.pad(mask, ((1, 0), (1, 0)))
    corners = mask & ~padded[:-1, 1:] & ~padded[1:, :-1]  # top-left pixels of the hint patches
    for y0, x0 in zip(*np.nonzero(corners)):
        draw.rectangle([x0 - 2, y0 - 2, x0 + PATCH + 1, y0 + PATCH + 1], outline=(255, 255, 255))
        draw.rectangle([x0 - 1, y0 - 1, x0 + PATCH, y0 + PATCH], outline=(0, 0, 0))


def make_contact_sheet(paths, out_png, colorizer, n_hints=10, size=256, columns=None, seed=0):
    """Write a PNG grid; columns default to input / automatic / N hints / truth."""
    columns = columns or ("input", "automatic", "%d hints" % n_hints, "truth")
    sheet = Image.new("RGB", (CELL * len(columns), (CELL + LABEL_H) * len(paths)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for row, path in enumerate(paths):
        with Image.open(path) as im:
            truth = center_crop(np.asarray(im.convert("RGB")))
        lab = rgb_to_lab(truth)
        l = lab[..., 0]
        gray = lab_to_srgb_int(l, np.zeros(l.shape + (2,), np.float32))
        rgba, _, mask = sample_hints(lab, n_hints, _seed(row, n_hints, seed))
        auto = colorizer.colorize(gray, size=size).render(8)
        hinted = Image.fromarray(colorizer.colorize(gray, hints=rgba, size=size).render(8))
        _outline_hints(hinted, mask)
        y = row * (CELL + LABEL_H)
        for col, (title, img) in enumerate(zip(columns, (Image.fromarray(gray), Image.fromarray(auto),
                                                          hinted, Image.fromarray(truth)))):
            _label(draw, col * CELL, y, title + ("" if col else "  " + os.path.basename(path)[:28]))
            sheet.paste(img, (col * CELL, y + LABEL_H))
    sheet.save(out_png)
    return out_png


def register(sub):
    p = sub.add_parser("contact-sheet", help="a PNG grid of input / automatic / hinted / truth",
                       formatter_class=argparse.RawDescriptionHelpFormatter, description=__doc__,
                       epilog="example:\n  tinct contact-sheet ../shared/val --limit 8 --out sheet.png")
    p.add_argument("inputs", nargs="+", help="color photos, or one folder of them")
    p.add_argument("--out", default="contact_sheet.png", help="PNG to write (default %(default)s)")
    p.add_argument("--limit", type=int, default=8, help="at most this many rows (default %(default)s)")
    p.add_argument("--every", type=int, default=1, help="take every k-th photo of a folder (spread the rows)")
    p.add_argument("--hints", type=int, default=10, help="number of hints in the third column")
    p.add_argument("--model", help="another ONNX model")
    p.set_defaults(func=run)


def run(args):
    paths = list_images(args.inputs[0])[::args.every] if len(args.inputs) == 1 and os.path.isdir(args.inputs[0]) \
        else list(args.inputs)
    if not paths:
        raise TinctError("no photos given")
    from .pipeline import Colorizer

    out = make_contact_sheet(paths[:args.limit], args.out, Colorizer(model_path=args.model), n_hints=args.hints)
    print("wrote %s" % out)
    return 0
