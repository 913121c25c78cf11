"""`tinct eval-damage`: how well the damage detector finds damage, and what that is worth to
the restoration.

Protocol, on a folder never trained on (../shared/val): each photo is scaled so its short
side is SIDE and center-cropped to SIDE x SIDE, turned to lightness, and made an old damaged
print by engine/damage_synth.py (ageing, damage, scan; seed fixed per photo, no scene lines).
- precision, recall and F1 of the detected mask against the synthesizer's truth (pixels the
  damage changed by 12 L or more), over all pixels of all photos, leaving out the unsure
  pixels it changed by 4 to 12 L (engine/damage_synth.py); also with a 1-pixel tolerance (a
  flag next to true damage is not a false alarm, true damage next to a flag is found), since
  a crack's edge pixel is ambiguous;
- flagged share on the clean photos, as they are and at their own size; on the same photos
  aged and scanned without damage; and with scene content that is not damage (hair, branches,
  wires, rigging, text, clipped exposure; one kind per photo in turn) drawn in: the hard negatives;
- whole-crop PSNR of the restoration (engine/restore.py) given the true mask (every pixel the
  damage changed by 4 L or more) and given the detected mask, against the same print without
  damage; and of the damaged print left as is.
"""

import numpy as np
from PIL import Image

from . import TinctError
from .evaluate_restore import add_eval_parser, add_output_arguments, check_folder, write_outputs

SIDE = 384


def _counts(pred, truth, unsure):
    """Pixel counts for the scores; unsure pixels (changed too faintly to tell) count neither way."""
    from scipy import ndimage

    pred = pred & ~unsure
    near_truth = ndimage.binary_dilation(truth, np.ones((3, 3), bool))
    near_pred = ndimage.binary_dilation(pred, np.ones((3, 3), bool))
    return np.array([(pred & truth).sum(), (pred & ~truth).sum(), (~pred & truth).sum(),
                     (pred & ~near_truth).sum(), (truth & ~near_pred).sum(), pred.sum(), truth.sum()], np.int64)


def _scores(c):
    tp, fp, fn, fp_tol, fn_tol, npred, ntrue = [float(x) for x in c]
    p, r = tp / max(npred, 1), tp / max(ntrue, 1)
    pt, rt = 1 - fp_tol / max(npred, 1), 1 - fn_tol / max(ntrue, 1)
    f = lambda a, b: 2 * a * b / max(a + b, 1e-12)  # noqa: E731
    return {"precision": p, "recall": r, "f1": f(p, r), "precision_1px": pt, "recall_1px": rt, "f1_1px": f(pt, rt)}


def run_eval_damage(folder, limit=None, detector=None, restorer=None, threshold=None, seed=0, progress=True,
                    restore=True, sweep=(), sheet_rows=0):
    """The numbers of the protocol above, as a dict. sweep: more thresholds to score the mask and the
    flagged shares at (the probabilities are computed once), under "sweep". sheet_rows: keep the first
    photos' maps (damaged, truth, detected, restored with the detected mask) under "sheet"."""
    from scipy import ndimage

    from .color import rgb_to_lab
    from .damage_synth import NEGATIVE_KINDS, DamageSynth
    from .detect_damage import Detector
    from .evaluate import center_crop
    from .evaluate_restore import _psnr_gray
    from .restore import Restorer
    from .train.data import list_images

    paths = list_images(folder)[:limit] if limit else list_images(folder)
    if not paths:
        raise TinctError("%s: no photos" % folder)
    detector = detector or Detector()
    threshold = detector.threshold if threshold is None else threshold
    restorer = (restorer or Restorer()) if restore else None
    counts = np.zeros(7, np.int64)
    flagged = {"clean": [], "aged": []}
    negatives = {k: [] for k in NEGATIVE_KINDS}
    psnr = {"damaged": [], "true_mask": [], "detected_mask": [], "detected_mask_grown": []}
    damaged_share, sheet = [], []
    sweep = sorted(set(float(t) for t in sweep))
    swept = {t: {"counts": np.zeros(7, np.int64), "clean": [], "aged": [], "lines": []} for t in sweep}
    it = enumerate(paths)
    if progress:
        from tqdm import tqdm

        it = tqdm(it, total=len(paths), desc="eval-damage", unit="photo")
    for i, path in it:
        with Image.open(path) as im:
            rgb = np.asarray(im.convert("RGB"))
        p_clean = detector.probability(rgb)
        flagged["clean"].append(float((p_clean >= threshold).mean()))
        l = rgb_to_lab(center_crop(rgb, SIDE))[..., 0]
        synth = DamageSynth(np.random.default_rng([seed, i]))
        damaged, truth, unsure, reference = synth.sample(l, damaged=True, negatives=False, reference=True,
                                                         unsure=True)
        p_damaged = detector.probability_l(damaged)
        pred = p_damaged >= threshold
        counts += _counts(pred, truth, unsure)
        damaged_share.append(float(truth.mean()))
        aged, _ = DamageSynth(np.random.default_rng([seed, i, 1])).sample(l, damaged=False, negatives=False)
        p_aged = detector.probability_l(aged)
        flagged["aged"].append(float((p_aged >= threshold).mean()))
        kind = NEGATIVE_KINDS[i % len(NEGATIVE_KINDS)]
        lines, _ = DamageSynth(np.random.default_rng([seed, i, 2])).sample(l, damaged=False, negatives=[kind])
        p_lines = detector.probability_l(lines)
        negatives[kind].append(float((p_lines >= threshold).mean()))
        for t, acc in swept.items():
            acc["counts"] += _counts(p_damaged >= t, truth, unsure)
            for name, p in (("clean", p_clean), ("aged", p_aged), ("lines", p_lines)):
                acc[name].append(float((p >= t).mean()))
        if restorer is not None:
            psnr["damaged"].append(_psnr_gray(damaged, reference))
            psnr["true_mask"].append(_psnr_gray(restorer.fill(damaged, ~(truth | unsure)), reference))
            fixed = restorer.fill(damaged, ~pred)
            psnr["detected_mask"].append(_psnr_gray(fixed, reference))
            grown = ndimage.binary_dilation(pred, np.ones((3, 3), bool))  # a crack's soft edge too
            psnr["detected_mask_grown"].append(_psnr_gray(restorer.fill(damaged, ~grown), reference))
            if len(sheet) < sheet_rows:  # truth: white = damage, gray = unsure; found: white
                sheet.append([damaged, np.where(truth, 100.0, np.where(unsure, 50.0, 0.0)), pred * 100.0, fixed])
    mean = lambda v: float(np.mean(v)) if v else None  # noqa: E731
    return {"sheet": sheet, "photos": len(paths), "side": SIDE, "threshold": threshold, "seed": seed,
            "damaged_share": mean(damaged_share), "mask": _scores(counts),
            "flagged": {k: mean(v) for k, v in flagged.items()},
            "flagged_hard_negatives": {k: mean(v) for k, v in negatives.items()},
            "flagged_hard_negatives_all": mean(sum(negatives.values(), [])),
            "restoration_psnr": {k: mean(v) for k, v in psnr.items()},
            "sweep": [dict(_scores(a["counts"]), threshold=t, flagged_clean=mean(a["clean"]),
                           flagged_aged=mean(a["aged"]), flagged_hard_negatives=mean(a["lines"]))
                      for t, a in swept.items()]}


def format_report(r):
    m = r["mask"]
    lines = ["Damage detection on %d photos (%dx%d crops, synthetic damage on %.1f %% of pixels, threshold %.2f)"
             % (r["photos"], r["side"], r["side"], 100 * r["damaged_share"], r["threshold"]),
             "mask           precision %.3f  recall %.3f  F1 %.3f" % (m["precision"], m["recall"], m["f1"]),
             "  1-px tolerance precision %.3f  recall %.3f  F1 %.3f" % (m["precision_1px"], m["recall_1px"],
                                                                        m["f1_1px"]),
             "flagged share  clean photos %.3f %%   aged, no damage %.3f %%   hard negatives %.3f %%" % (
                 100 * r["flagged"]["clean"], 100 * r["flagged"]["aged"], 100 * r["flagged_hard_negatives_all"]),
             "  hard negatives by kind: " + ", ".join("%s %.3f %%" % (k, 100 * v) for k, v in
                                                      r["flagged_hard_negatives"].items() if v is not None)]
    p = r["restoration_psnr"]
    for row in r.get("sweep", []):
        lines.append("  at %.2f: precision %.3f recall %.3f F1 %.3f (1 px %.3f)  flagged clean %.3f %% aged %.3f %% "
                     "lines %.3f %%" % (row["threshold"], row["precision"], row["recall"], row["f1"], row["f1_1px"],
                                       100 * row["flagged_clean"], 100 * row["flagged_aged"],
                                       100 * row["flagged_hard_negatives"]))
    if p["true_mask"] is not None:
        lines.append("restoration PSNR (whole crop)  true mask %.2f dB   detected mask %.2f dB (%+.2f), grown by "
                     "1 px %.2f dB (%+.2f)   left damaged %.2f dB"
                     % (p["true_mask"], p["detected_mask"], p["detected_mask"] - p["true_mask"],
                        p["detected_mask_grown"], p["detected_mask_grown"] - p["true_mask"], p["damaged"]))
    return "\n".join(lines)


def register(sub):
    p = add_eval_parser(sub, "eval-damage", "measure damage detection (precision, recall, F1, false alarms)", __doc__,
                        "tinct eval-damage ../shared/val --json runs/eval_damage.json",
                        "folder of photos without damage")
    p.add_argument("--threshold", type=float, metavar="T", help="damage probability from which a pixel is "
                                                                "flagged (default: the model's)")
    p.add_argument("--damage-model", metavar="ONNX", help="evaluate another damage-detection ONNX model")
    p.add_argument("--no-restore", action="store_true", help="skip the restoration PSNR (faster)")
    p.add_argument("--sweep", metavar="T,T,...", help="also score the mask and the false alarms at these thresholds")
    p.add_argument("--seed", type=int, default=0, help="damage seed (default 0)")
    add_output_arguments(p, "damaged / truth / found / restored with what was found,", run)


def run(args):
    from .detect_damage import Detector

    check_folder(args.dir)
    if args.threshold is not None and not 0 < args.threshold < 1:
        raise TinctError("--threshold must be between 0 and 1")
    try:
        sweep = [float(t) for t in args.sweep.split(",")] if args.sweep else []
    except ValueError:
        raise TinctError("--sweep takes thresholds separated by commas, e.g. 0.3,0.5,0.7")
    if any(not 0 < t < 1 for t in sweep):
        raise TinctError("--sweep thresholds must be between 0 and 1")
    results = run_eval_damage(args.dir, args.limit, Detector(args.damage_model), threshold=args.threshold,
                              seed=args.seed, restore=not args.no_restore, sweep=sweep,
                              sheet_rows=4 if args.sheet else 0)
    print(format_report(results))
    if args.sheet and not results["sheet"]:
        raise TinctError("--sheet needs the restoration (drop --no-restore)")
    write_outputs(results, args)
    return 0
