#!/usr/bin/env python3
"""Instance-aware mode's cost: the whole pipeline (colorize + render) at 1 MP on the
CPU with instances vs without (target: at most 2x with up to 8 instances), and the
detector at 416 x 416 (target: at most 150 ms). A script, not a test: it prints
figures next to the targets of issue 6.

    python bench/bench_instances.py [--fused MODEL.onnx] [--repeat 5] [--threads N]

Without --fused it uses the installed fused model, or (needs torch) builds one
from a fresh small network (speed does not depend on the weights). Timings alternate the modes run by run, so a busy machine slows
both alike; the ratio is of the best runs.
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
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--threads", type=int, help="onnxruntime threads (default: all cores)")
    ap.add_argument("--layers", help="without an installed model: fuse these layers, comma-separated "
                                     "(default: engine.models.fusion.DEFAULT_LAYERS)")
    args = ap.parse_args()

    from engine.detect import Detector, letterbox, normalize
    from engine.instance_aware import default_fused_path
    from engine.pipeline import Colorizer

    fused_path = args.fused or default_fused_path()
    built = ""
    if not fused_path:
        from engine.models.fusion import DEFAULT_LAYERS

        layers = tuple(args.layers.split(",")) if args.layers else DEFAULT_LAYERS
        fused_path = build_fused(os.path.join(tempfile.mkdtemp(), "fused.onnx"), layers)
        built = " (built for timing: fresh weights, fused at %s)" % ",".join(layers)
    photo, name = photo_1mp()
    h, w = photo.shape
    c = Colorizer(fused_model_path=fused_path, threads=args.threads)
    masks = eight_masks(h, w)
    modes = {"none": "none", "auto": "auto", "8 masks": masks}
    info = {}
    for label, inst in modes.items():  # warm every session once
        info[label] = c.colorize(photo, instances=inst).info
        c.colorize(photo[:256, :256], instances="none").render()
    times = {label: [] for label in modes}
    for _ in range(args.repeat):
        for label, inst in modes.items():
            times[label].append(timed(lambda: c.colorize(photo, instances=inst).render()))

    print("Tinct instance-aware benchmark (%d CPU cores, device %s)" % (os.cpu_count(), c.device))
    print("fused model: %s%s" % (os.path.relpath(fused_path, ROOT) if fused_path.startswith(ROOT) else fused_path,
                                 built))
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
