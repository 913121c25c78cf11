#!/usr/bin/env python3
"""Instance-aware mode's cost: the whole pipeline (colorize + render) on the CPU with
instances vs without (target: at most 2x with up to 8 instances; issue 19 measures it on
a 256 x 256 photo, issue 6 at 1 MP), and the detector at 416 x 416 (target: at most 150 ms).
A script, not a test: it prints figures next to the targets.

    python bench/bench_instances.py [--fused MODEL.onnx] [--small] [--repeat 5] [--threads N]

Without --fused it uses the installed fused model, or (needs torch) builds one with fresh
weights (speed does not depend on them): the pretrained-encoder network's fused head beside
the shipped encoder, or with --small the small network's fused graph. "none" runs the full
model the fused one pairs with (one head; --small: tinct-small.onnx). Timings alternate the
modes run by run, so a busy machine slows both alike; the ratio is of the best runs.
"""

import argparse
import os
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
VAL = os.path.join(os.path.dirname(ROOT), "shared", "val")
MULTI_OBJECT = "coco_000000002006.jpg"  # a bus and people: several detected objects
FALLBACK = os.path.join(ROOT, "examples", "great_wall_bw.png")
RATIO_TARGET = 2.0
DETECTOR_TARGET_S = 0.150


def photo_1mp():
    """A real photo (gray) scaled to about 1 MP, so the detector finds real objects."""
    from PIL import Image

    path = os.path.join(VAL, MULTI_OBJECT)
    if not os.path.exists(path):
        path = FALLBACK
    im = Image.open(path).convert("L")
    w = int(round((1e6 * im.width / im.height) ** 0.5))
    h = int(round(1e6 / w))
    return np.asarray(im.resize((w, h), Image.BICUBIC)), os.path.basename(path)


def eight_masks(h, w):
    """Eight user masks of varied size spread over the photo (the most instances allowed)."""
    rng = np.random.default_rng(0)
    masks = []
    for k in range(8):
        m = np.zeros((h, w), bool)
        bh, bw = int(h * rng.uniform(0.2, 0.6)), int(w * rng.uniform(0.15, 0.5))
        y, x = int(rng.integers(0, h - bh)), int(rng.integers(0, w - bw))
        m[y:y + bh, x:x + bw] = True
        masks.append(m)
    return masks


def build_fused_lite0(folder, stages):
    """A fused head and a one-head full model with fresh weights, beside a copy of the shipped
    encoder. -> (full model path, fused model path)."""
    import shutil

    import torch

    from engine.models.fusion_lite0 import LiteFusionHead, export_fused_head
    from engine.models.hintnet import HintHead
    from engine.runtime import WEIGHTS_DIR
    from engine.train.export import ENCODER_FILE, export_pretrained, write_metadata

    shutil.copy(os.path.join(WEIGHTS_DIR, ENCODER_FILE), os.path.join(folder, ENCODER_FILE))
    torch.manual_seed(0)
    head = HintHead()
    weights = os.path.join(folder, "head.pt")
    torch.save({"head": head.state_dict(), "model_name": "lite0", "step": 0}, weights)
    full = export_pretrained(weights, os.path.join(folder, "tinct-lite0.onnx"))
    fused = export_fused_head(LiteFusionHead(head, stages=stages).eval(), os.path.join(folder, "fused.onnx"))
    write_metadata(fused, {"encoder": ENCODER_FILE, "size_multiple": "32", "inst_size": "128", "max_instances": "8"})
    return full, fused


def build_fused(path, layers):
    import torch

    from engine.models.colornet import ColorNet
    from engine.models.config import CONFIGS
    from engine.models.fusion import InstanceFusionNet, export_fused_onnx

    torch.manual_seed(0)
    model = InstanceFusionNet.from_full(ColorNet(CONFIGS["small"]).eval(), layers=layers).eval()
    export_fused_onnx(model, path, dynamic_instances=True,
                      metadata={"max_instances": "8", "inst_size": "128", "stage": "fusion"})
    return path


def timed(fn):
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fused", help="the fused ONNX model to time (default: installed, else built)")
    ap.add_argument("--model", help="the full model it pairs with, for the \"none\" runs (default: the shipped one)")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--threads", type=int, help="onnxruntime threads (default: all cores)")
    ap.add_argument("--layers", help="without an installed model: fuse these layers (or decoder stages), "
                                     "comma-separated (default: the network's default)")
    ap.add_argument("--small", action="store_true", help="time the small network's instance mode")
    ap.add_argument("--size", type=int, default=256, help="side of the square photo (default %(default)s); "
                                                          "0: the 1 MP photo")
    args = ap.parse_args()

    from engine.detect import Detector, letterbox, normalize
    from engine.instance_aware import default_fused_path
    from engine.pipeline import Colorizer

    fused_path = args.fused or (None if args.small else default_fused_path())
    full_path = args.model or (os.path.join(ROOT, "engine", "weights", "tinct-small.onnx") if args.small else None)
    built = ""
    if not fused_path and args.small:
        from engine.models.fusion import DEFAULT_LAYERS

        layers = tuple(args.layers.split(",")) if args.layers else DEFAULT_LAYERS
        fused_path = build_fused(os.path.join(tempfile.mkdtemp(), "fused.onnx"), layers)
        built = " (built for timing: fresh weights, fused at %s)" % ",".join(layers)
    elif not fused_path:
        from engine.models.fusion_lite0 import DEFAULT_STAGES

        layers = tuple(args.layers.split(",")) if args.layers else DEFAULT_STAGES
        full_path, fused_path = build_fused_lite0(tempfile.mkdtemp(), layers)
        built = " (built for timing: fresh weights, one head, fused at %s)" % ",".join(layers)
    photo, name = photo_1mp()
    if args.size:
        from PIL import Image

        photo = np.asarray(Image.fromarray(photo).resize((args.size, args.size), Image.BICUBIC))
    h, w = photo.shape
    c = Colorizer(model_path=full_path, fused_model_path=fused_path, threads=args.threads)
    masks = eight_masks(h, w)
    modes = {"none": "none", "auto": "auto", "8 masks": masks}
    info = {}
    for label, inst in modes.items():  # warm every session once
        info[label] = c.colorize(photo, instances=inst).info
        c.colorize(photo[:256, :256], instances="none").render()
    def forget():
        """A new photo as far as the engine knows: no cached features or detections."""
        for cache in (c.runtime.features, c.fused.runtime.features, c._detections):
            if cache is not None:
                cache.entries.clear()

    times = {label: [] for label in modes}
    edits = {label: [] for label in modes}  # a hint edit: the same photo again, caches kept
    for _ in range(args.repeat):
        for label, inst in modes.items():
            forget()
            times[label].append(timed(lambda: c.colorize(photo, instances=inst).render()))
            edits[label].append(timed(lambda: c.colorize(photo, instances=inst).render()))

    print("Tinct instance-aware benchmark (%d CPU cores, device %s)" % (os.cpu_count(), c.device))
    print("fused model: %s%s" % (os.path.relpath(fused_path, ROOT) if fused_path.startswith(ROOT) else fused_path,
                                 built))
    print("full model: %s" % os.path.basename(c.runtime.path))
    print("photo: %s scaled to %dx%d (%.2f MP), working size %s" % (name, w, h, h * w / 1e6,
                                                                   "x".join(map(str, info["none"]["working_size"]))))
    base = min(times["none"])
    print("%-8s %5s %9s %9s %7s  target" % ("mode", "inst", "best s", "median s", "ratio"))
    for label in modes:
        best, med = min(times[label]), float(np.median(times[label]))
        used = info[label]["instances"]["used"]
        ratio = best / base
        verdict = "" if label == "none" else "<= %.1fx %s" % (RATIO_TARGET, "OK" if ratio <= RATIO_TARGET else "MISSED")
        print("%-8s %5d %9.3f %9.3f %6.2fx  %s" % (label, used, best, med, ratio, verdict))
    print("a hint edit on the same photo (encoder features and detections reused):")
    for label in modes:
        print("%-8s %5d %9.3f %9.3f %6.2fx" % (label, info[label]["instances"]["used"], min(edits[label]),
                                              float(np.median(edits[label])), min(edits[label]) / min(edits["none"])))

    det = Detector(threads=args.threads)
    x = normalize(letterbox(photo)[0])
    det.raw(x)
    net = [timed(lambda: det.raw(x)) for _ in range(max(10, args.repeat))]
    full = [timed(lambda: det.detect(photo)) for _ in range(max(5, args.repeat))]
    print("detector network at 416x416: best %.0f ms, median %.0f ms   (target <= %.0f ms) %s" % (
        min(net) * 1e3, np.median(net) * 1e3, DETECTOR_TARGET_S * 1e3,
        "OK" if min(net) <= DETECTOR_TARGET_S else "MISSED"))
    print("detect() on the 1 MP photo (letterbox + network + decoding + NMS): best %.0f ms, median %.0f ms"
          % (min(full) * 1e3, np.median(full) * 1e3))


if __name__ == "__main__":
    main()
