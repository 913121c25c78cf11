"""`tinct eval-restore`: how well painted damage is filled.

Protocol: each photo is scaled so its short side is 256 and center-cropped to 256x256
(as `tinct eval`), turned to its lightness, and damaged with a simulated mask
(engine/damage.py: scratches, specks, patches, folds; seed fixed per photo), the
damaged pixels painted white as on a scratched print. Each method fills them; PSNR of
the 8-bit gray result against the undamaged photo, over the whole crop and over the
damaged pixels alone. Methods: `white` (left as damaged), `harmonic` (Laplace fill,
the classical baseline), `tinct` (the partial-convolution network).
"""

import argparse
import json
import os

import numpy as np
from PIL import Image

from . import TinctError
from .color import rgb_to_lab
from .damage import DamageSimulator
from .evaluate import center_crop
from .train.data import list_images

METHODS = ("white", "harmonic", "tinct")


def _psnr_gray(a, b, where=None):
    """PSNR of two L maps rendered as 8-bit gray values (L / 100 * 255)."""
    qa, qb = np.round(a * 2.55), np.round(b * 2.55)
    d = (qa - qb) ** 2
    mse = d[where].mean() if where is not None else d.mean()
    return 10 * np.log10(255.0 ** 2 / max(mse, 1e-10))


def run_eval_restore(folder, limit=None, restorer=None, seed=0, progress=True, kind=None, sheet_rows=0):
    """{"methods": {m: {"all": dB, "holes": dB}}, "photos": n, "damaged_fraction": mean, "sheet": [...]}.
    kind: damage of one kind only (engine.damage.DamageSimulator.KINDS), else mixed.
    sheet_rows: keep the first photos' L maps (damaged, each method, truth) for `restore_sheet`."""
    from .restore import Restorer, harmonic_fill

    paths = list_images(folder)[:limit] if limit else list_images(folder)
    restorer = restorer or Restorer()
    scores = {m: {"all": [], "holes": []} for m in METHODS}
    fractions, sheet = [], []
    it = paths
    if progress:
        from tqdm import tqdm

        it = tqdm(paths, desc="eval-restore", unit="photo")
    for i, path in enumerate(it):
        with Image.open(path) as im:
            rgb = center_crop(np.asarray(im.convert("RGB")))
        l = rgb_to_lab(rgb)[..., 0]
        intact = DamageSimulator(np.random.default_rng([seed, i])).mask(*l.shape, kind=kind) > 0.5
        damaged = np.where(intact, l, 100.0)
        fractions.append(1.0 - intact.mean())
        outputs = {"white": damaged, "harmonic": harmonic_fill(damaged, ~intact),
                   "tinct": restorer.fill(damaged, intact)}
        for m, out in outputs.items():
            scores[m]["all"].append(_psnr_gray(out, l))
            scores[m]["holes"].append(_psnr_gray(out, l, ~intact))
        if len(sheet) < sheet_rows:
            sheet.append([outputs[m] for m in METHODS] + [l])
    return {"sheet": sheet, "methods": {m: {k: float(np.mean(v)) for k, v in s.items()} for m, s in scores.items()},
            "photos": len(paths), "damaged_fraction": float(np.mean(fractions)) if fractions else 0.0,
            "kind": kind or "mixed"}


def restore_sheet(rows, out_png):
    """Rows of damaged / harmonic / tinct / truth lightness as one gray PNG (3 px gaps)."""
    gap = 3
    h, w = rows[0][0].shape
    n = len(rows[0])
    sheet = np.full((len(rows) * (h + gap) - gap, n * (w + gap) - gap), 255, np.uint8)
    for r, maps in enumerate(rows):
        for c, l in enumerate(maps):
            sheet[r * (h + gap):r * (h + gap) + h, c * (w + gap):c * (w + gap) + w] = np.clip(
                np.round(l * 2.55), 0, 255).astype(np.uint8)
    Image.fromarray(sheet).save(out_png)


def format_table(results):
    lines = ["PSNR (dB) of the filled lightness on %d photos (256x256 crops, %s damage, %.1f %% damaged on average)"
             % (results["photos"], results["kind"], 100 * results["damaged_fraction"]),
             "%-10s %8s %8s" % ("method", "photo", "holes"), "-" * 28]
    for m, s in results["methods"].items():
        lines.append("%-10s %8.2f %8.2f" % (m, s["all"], s["holes"]))
    return "\n".join(lines)


def register(sub):
    p = add_eval_parser(sub, "eval-restore", "measure damage restoration (PSNR) against a classical fill", __doc__,
                        "tinct eval-restore ../shared/val --limit 40", "folder of photos (the undamaged truth)")
    p.add_argument("--model", help="evaluate another restoration ONNX model")
    p.add_argument("--seed", type=int, default=0, help="damage seed (default 0)")
    p.add_argument("--kind", choices=DamageSimulator.KINDS, help="damage of one kind only (default: mixed, as in "
                                                                 "training)")
    add_output_arguments(p, "damaged / harmonic / tinct / truth", run)


def add_eval_parser(sub, name, summary, doc, example, dir_help):
    """The parser of an eval command over a folder of photos (eval-restore, eval-damage), with its
    first options: the folder and --limit."""
    p = sub.add_parser(name, help=summary, formatter_class=argparse.RawDescriptionHelpFormatter, description=doc,
                       epilog="example:\n  " + example)
    p.add_argument("dir", help=dir_help)
    p.add_argument("--limit", type=int, metavar="N", help="only the first N photos (sorted by name)")
    return p


def add_output_arguments(p, sheet_columns, run):
    """What eval-restore and eval-damage both end their options with: --json, --sheet, and `run`."""
    p.add_argument("--json", metavar="FILE", help="also write the numbers as JSON")
    p.add_argument("--sheet", metavar="PNG", help="a contact sheet of %s on the first 4 photos" % sheet_columns)
    p.set_defaults(func=run)


def check_folder(folder):
    if not os.path.isdir(folder):
        raise TinctError("%s: folder not found" % folder)


def write_outputs(results, args):
    """--sheet (results["sheet"] as restore_sheet draws it) and --json (the rest of results)."""
    if args.sheet:
        restore_sheet(results["sheet"], args.sheet)
        print("wrote %s" % args.sheet)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({k: v for k, v in results.items() if k != "sheet"}, f, indent=1)


def run(args):
    from .restore import Restorer

    check_folder(args.dir)
    results = run_eval_restore(args.dir, args.limit, Restorer(args.model), args.seed, kind=args.kind,
                               sheet_rows=4 if args.sheet else 0)
    print(format_table(results))
    write_outputs(results, args)
    return 0
