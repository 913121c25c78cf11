#!/usr/bin/env python3
"""Probes that say whether the instance-aware stages have anything to gain, before and
after training them (engine/weights/MODEL_CARD_INSTANCES.md, Results). Needs torch.

  crops  PSNR of object crops (val photos, detector boxes, cut from the full-resolution
         photo and resized to 128^2), colorized automatically by the full network and by
         the instance network: the instance stage must win here first.
  paste  on `tinct eval`'s 256^2 crops with two or more objects: the full network alone vs
         the full network with the boxes' ab replaced by a network run on each box (largest
         first), at 128^2 and 256^2 crops: roughly the ceiling of what fusion can reach.

    python tools/instance_probes.py crops tools/checkpoints/tinct-small.pt runs/instance/checkpoint.pt
    python tools/instance_probes.py paste tools/checkpoints/tinct-small.pt runs/instance/checkpoint.pt
    python tools/instance_probes.py crops tools/checkpoints/tinct-lite0.pt runs/lite0_instance/checkpoint.pt

Either network: small-network checkpoints, or lite0 heads (run on the ImageNet encoder).
"""

import argparse
import glob
import os
import sys

import numpy as np
import torch
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from engine.color import lab_to_srgb_int, rgb_to_lab  # noqa: E402
from engine.detect import Detector  # noqa: E402
from engine.evaluate import center_crop  # noqa: E402
from engine.evaluate import psnr as rgb_psnr  # noqa: E402
from engine.hints import GLOBAL_DIM  # noqa: E402
from engine.instance_aware import plan_auto  # noqa: E402
from engine.train.instances import _crop_rgb, _usable  # noqa: E402
from engine.train.loop import load_model  # noqa: E402

VAL = os.path.join(os.path.dirname(ROOT), "shared", "val")


def load_net(path):
    """A small network's checkpoint, or a lite0 head (full or instance stage) on its encoder."""
    if torch.load(path, map_location="cpu", weights_only=False).get("model_name") != "lite0":
        return load_model(path)[0]
    from engine.models.efficientnet import Encoder, load_pretrained
    from engine.models.hintnet import PretrainedColorNet
    from engine.train.instances_lite0 import load_head_weights

    return PretrainedColorNet(Encoder(load_pretrained()), load_head_weights(path)[0]).eval()


def auto_ab(net, l):
    """ab (h, w, 2) of a ColorNet with no hints, L (h, w)."""
    h, w = l.shape
    with torch.no_grad():
        ab = net(torch.from_numpy(np.ascontiguousarray(l)[None, None]).float(), torch.zeros(1, 2, h, w),
                 torch.zeros(1, 1, h, w), torch.zeros(1, GLOBAL_DIM))[0]
    return ab[0].numpy().transpose(1, 2, 0)


def psnr(l, ab, truth):
    """PSNR of L + ab against the truth, in 8-bit RGB as `tinct eval` measures it."""
    return rgb_psnr(lab_to_srgb_int(l, ab), truth)


def resize_plane(a, w, h, box=None):
    return np.asarray(Image.fromarray(a.astype(np.float32)).resize((w, h), Image.BILINEAR, box=box))


def probe_crops(full, inst, det, paths):
    scores = {"full": [], "instance": []}
    for p in paths:
        rgb = np.asarray(Image.open(p).convert("RGB"))
        h, w = rgb.shape[:2]
        found = det.detect(rgb)
        if not len(found):
            continue
        for b in _usable(found.boxes / np.array([w, h, w, h], np.float32), h, w)[:3]:
            crop = _crop_rgb(rgb, b * np.array([w, h, w, h]), 128)
            l = rgb_to_lab(crop)[..., 0]
            scores["full"].append(psnr(l, auto_ab(full, l), crop))
            scores["instance"].append(psnr(l, auto_ab(inst, l), crop))
    print("%d object crops: full network %.3f dB, instance network %.3f dB"
          % (len(scores["full"]), np.mean(scores["full"]), np.mean(scores["instance"])))


def probe_paste(full, inst, det, paths):
    rows = {"full alone": []}
    for p in paths:
        rgb = center_crop(np.asarray(Image.open(p).convert("RGB")))
        l = rgb_to_lab(rgb)[..., 0]
        gray = np.repeat(np.asarray(Image.fromarray(rgb).convert("L"))[..., None], 3, -1)
        plan = plan_auto(gray, det)
        if len(plan.boxes) < 2:
            continue
        base = auto_ab(full, l)
        rows["full alone"].append(psnr(l, base, rgb))
        sides = (plan.boxes[:, 2] - plan.boxes[:, 0]) * (plan.boxes[:, 3] - plan.boxes[:, 1])
        for size in (128, 256):
            for name, net in (("instance", inst), ("full", full)):
                ab = base.copy()
                for i in np.argsort(-sides):
                    x0, y0 = (int(np.floor(v)) for v in plan.boxes[i, :2])
                    x1, y1 = (int(np.ceil(v)) for v in plan.boxes[i, 2:])
                    crop_ab = auto_ab(net, resize_plane(l, size, size, (x0, y0, x1, y1)))
                    ab[y0:y1, x0:x1] = np.stack([resize_plane(crop_ab[..., c], x1 - x0, y1 - y0) for c in range(2)], -1)
                rows.setdefault("%s pasted, %d^2" % (name, size), []).append(psnr(l, ab, rgb))
    print("%d multi-object crops:" % len(rows["full alone"]))
    for name, v in rows.items():
        print("  %-22s %.3f dB" % (name, np.mean(v)))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("probe", choices=("crops", "paste"))
    ap.add_argument("full", help="the full network's checkpoint or weights (.pt)")
    ap.add_argument("instance", help="the instance stage's checkpoint (.pt)")
    ap.add_argument("--val", default=VAL)
    args = ap.parse_args()
    torch.set_num_threads(1)
    full, inst = load_net(args.full), load_net(args.instance)
    det = Detector(threads=1)
    if args.probe == "crops":
        probe_crops(full, inst, det, sorted(glob.glob(os.path.join(args.val, "*")))[::2])
    else:
        probe_paste(full, inst, det, sorted(glob.glob(os.path.join(args.val, "coco*")))[:60])


if __name__ == "__main__":
    main()
