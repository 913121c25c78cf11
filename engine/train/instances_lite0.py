"""Instance-aware training on the pretrained-encoder network: `tinct train --model lite0 --stage
instance|fusion` (stage 1, the full head, is `tinct train --model lite0`).

As for the head itself, the frozen encoder's features are computed once and cached:
  instance  object crops: each usable detector box of a corpus photo, jittered, cut from the
            photo and resized to OBJECT_SIDE (square), flipped at random, `crops_per_box` times;
            a HintHead started from the full head's weights learns on them with simulated hints.
  fusion    windows of FUSION_SIDE (the working resolution) with their boxes, and each box's crop
            at the side the engine would use for that many objects (lite0_crop_side); both heads are
            frozen, only the fusion layers learn.
Detector boxes come from the box cache the small network's stages use (engine/train/instances.py).
"""

import functools
import json
import os

import numpy as np
import torch

from ..color import rgb_to_lab
from ..detect import MAX_INSTANCES, MIN_BOX_FRAC, crop_hints
from ..instance_aware import crop_side
from ..models.efficientnet import FEATURE_CHANNELS, FEATURE_NAMES, MULTIPLE, Encoder, load_pretrained
from ..models.fusion_lite0 import DEFAULT_STAGES, LiteFusionHead
from ..models.hintnet import HintHead, load_head
from .data import HintSimulator
from .features import STRIDES, CorpusFeatures, cache_crops
from .instances import _crop_rgb, _resume, default_box_cache, load_photos_with_boxes
from .loop import begin_stage, freeze, train_steps
from .pretrained import MODEL_NAME, WindowBatches, colorization_loss, head_loss

OBJECT_SIDE = 128
FUSION_SIDE = 256
INST_SIDES = (128, 96, 64)  # the crop sides lite0_crop_side() gives at the working resolution


def lite0_crop_side(h, w, k):
    """The crop side the engine uses for k objects on an (h, w) grid (FusedModel.crop_side)."""
    return crop_side(h, w, k, OBJECT_SIDE, MULTIPLE, 2 * MULTIPLE)


def load_head_weights(path, map_location="cpu"):
    """A lite0 head from a weights/checkpoint file (the full head or an instance-stage one)."""
    state = torch.load(path, map_location=map_location, weights_only=False)
    if state.get("model_name") != MODEL_NAME:
        raise ValueError("%s is not a %s head (train the full head with `tinct train --model lite0`)" % (
            path, MODEL_NAME))
    return load_head(HintHead(), state.get("head") or state["model"]), state


def _photos_with_boxes(corpus, out_dir, box_cache, limit, log, progress):
    """The corpus photos that have a usable detector box (with those boxes), and the encoder."""
    items = load_photos_with_boxes(corpus, box_cache or default_box_cache(corpus, out_dir), limit, log, progress)
    return [it for it in items if len(it[1])], Encoder(load_pretrained()).eval()


# ----------------------------------------------------------------------------- stage 2: object crops


def object_cache(items, folder, encoder, crops_per_box=3, side=OBJECT_SIDE, seed=0, jitter=0.1, progress=True):
    """Cache jittered crops of every usable box (items: (rgb, boxes in [0, 1]) per photo)."""
    pairs = [(p, b) for p, (_, boxes) in enumerate(items) for b in range(len(boxes))]
    want = {"objects": len(pairs), "crops_per_box": crops_per_box, "side": side, "seed": seed,
            "count": len(pairs) * crops_per_box, "kind": "objects"}

    def make_crop(i):
        p, b = pairs[i // crops_per_box]
        rgb, boxes = items[p]
        h, w = rgb.shape[:2]
        rng = np.random.default_rng([seed, i])
        x0, y0, x1, y1 = boxes[b] * np.array([w, h, w, h])
        dx, dy = (x1 - x0) * jitter, (y1 - y0) * jitter
        x0, x1 = max(0.0, x0 + rng.uniform(-dx, dx)), min(float(w), x1 + rng.uniform(-dx, dx))
        y0, y1 = max(0.0, y0 + rng.uniform(-dy, dy)), min(float(h), y1 + rng.uniform(-dy, dy))
        crop = _crop_rgb(rgb, (x0, y0, max(x1, x0 + 1), max(y1, y0 + 1)), side)
        return np.ascontiguousarray(crop[:, ::-1]) if rng.random() < 0.5 else crop

    return cache_crops(folder, want, make_crop, encoder, progress=progress, desc="object crop features")


def train_instance(corpus, out_dir, full_weights, steps=1500, batch_size=16, lr=3e-4, seed=0, limit=None,
                   box_cache=None, feature_cache=None, crops_per_box=3, checkpoint_every=100, threads=None,
                   log=print, progress=True):
    """Stage 2: a head started from the full head, on object crops' cached features."""
    device = begin_stage(out_dir, threads, seed)
    head, full_state = load_head_weights(full_weights)
    resume = _resume(out_dir, "instance")
    if resume:
        load_head(head, resume["model"])
    items, encoder = _photos_with_boxes(corpus, out_dir, box_cache, limit, log, progress)
    cache = object_cache(items, feature_cache or os.path.join(out_dir, "objects"), encoder, crops_per_box,
                         seed=seed, progress=progress)
    batches = WindowBatches(CorpusFeatures(cache), OBJECT_SIDE, seed)
    log("instance stage (lite0): %d photos with usable boxes, %d object crops" % (len(items), len(batches.cache)))
    head.feature_dropout.p = float(full_state.get("feature_dropout", 0.1))
    head.to(device).train()
    extra = {"model_name": MODEL_NAME, "inst_size": OBJECT_SIDE, "full_weights": os.path.abspath(full_weights),
             "full_step": full_state["step"]}
    return train_steps("instance", head, head.parameters(), batches, head_loss, out_dir, steps, batch_size, lr,
                       extra, resume, log, progress, checkpoint_every, device)


# ----------------------------------------------------------------------------- stage 3: windows + boxes


def plan_windows(items, per_photo, side, seed, min_visible=0.3, max_instances=MAX_INSTANCES):
    """For each photo with boxes, `per_photo` windows: (photo, scaled size, offset, flip, boxes in
    window pixels); boxes mostly inside and not too small to use (as plan_auto keeps them)."""
    plans = []
    for p, (rgb, boxes) in enumerate(items):
        h, w = rgb.shape[:2]
        for j in range(per_photo):
            rng = np.random.default_rng([seed, p, j])
            scale = rng.uniform(side, side * 1.25) / min(h, w)
            nh, nw = max(side, int(round(h * scale))), max(side, int(round(w * scale)))
            oy, ox = int(rng.integers(0, nh - side + 1)), int(rng.integers(0, nw - side + 1))
            flip = bool(rng.random() < 0.5)
            kept = []
            for b in boxes:
                px = b * np.array([nw, nh, nw, nh])
                q = np.clip(px - np.array([ox, oy, ox, oy]), 0, side)
                area, vis = (px[2] - px[0]) * (px[3] - px[1]), (q[2] - q[0]) * (q[3] - q[1])
                if area > 0 and vis / area >= min_visible and min(q[2] - q[0], q[3] - q[1]) >= MIN_BOX_FRAC * side:
                    kept.append([side - q[2], q[1], side - q[0], q[3]] if flip else list(q))
            kept = sorted(kept, key=lambda q: -(q[2] - q[0]) * (q[3] - q[1]))[:max_instances]
            if kept:
                plans.append({"photo": p, "size": (nh, nw), "offset": (oy, ox), "flip": flip,
                              "boxes": np.array(kept, np.float32)})
    return plans


def _window(items, plan, side):
    from PIL import Image

    rgb = items[plan["photo"]][0]
    nh, nw = plan["size"]
    oy, ox = plan["offset"]
    scaled = np.asarray(Image.fromarray(rgb).resize((nw, nh), Image.BICUBIC, reducing_gap=2.0))
    win = scaled[oy:oy + side, ox:ox + side]
    return np.ascontiguousarray(win[:, ::-1] if plan["flip"] else win)


def fusion_cache(items, folder, encoder, per_photo=2, side=FUSION_SIDE, seed=0, progress=True):
    """Windows and their instance crops (one cache per crop side), features included."""
    plans = plan_windows(items, per_photo, side, seed)
    want = {"windows": len(plans), "per_photo": per_photo, "side": side, "seed": seed, "count": len(plans),
            "kind": "fusion windows"}
    # a window's crops are cut right after it (and after each other): keep the last few windows
    window = functools.lru_cache(maxsize=8)(lambda i: _window(items, plans[i], side))
    cache_crops(os.path.join(folder, "windows"), want, window, encoder, progress=progress, desc="window features")
    # instance j of window i, grouped by the crop side the engine would use for that window's count
    refs = {s: [] for s in INST_SIDES}
    for i, plan in enumerate(plans):
        s = lite0_crop_side(side, side, len(plan["boxes"]))
        plan["inst_side"], plan["inst_index"] = s, len(refs[s])
        refs[s].extend((i, j) for j in range(len(plan["boxes"])))

    def make_crop(s):
        def crop(n):
            i, j = refs[s][n]
            # cut from the window, as the engine cuts crops from the photo it colorizes
            return _crop_rgb(window(i), tuple(float(v) for v in plans[i]["boxes"][j]), s)
        return crop

    for s in INST_SIDES:
        if refs[s]:
            want_s = {"instances": len(refs[s]), "side": s, "seed": seed, "count": len(refs[s]),
                      "windows": len(plans), "kind": "instance crops"}
            cache_crops(os.path.join(folder, "inst%d" % s), want_s, make_crop(s), encoder, progress=progress,
                        desc="instance crop features (%d)" % s)
    with open(os.path.join(folder, "plans.json"), "w") as f:
        json.dump([{"boxes": p["boxes"].tolist(), "inst_side": p["inst_side"], "inst_index": p["inst_index"]}
                   for p in plans], f)
    return folder


class FusionBatches:
    """Batches of windows with their instances, all of one crop side (the engine's for that count)."""

    def __init__(self, folder, seed=0):
        with open(os.path.join(folder, "plans.json")) as f:
            self.plans = json.load(f)
        self.windows = CorpusFeatures(os.path.join(folder, "windows"))
        self.side = self.windows.side
        self.inst = {s: CorpusFeatures(os.path.join(folder, "inst%d" % s)) for s in INST_SIDES
                     if os.path.exists(os.path.join(folder, "inst%d" % s))}
        self.by_side = {s: [i for i, p in enumerate(self.plans) if p["inst_side"] == s] for s in self.inst}
        self.rng = np.random.default_rng(seed)
        self.hints = HintSimulator(self.rng)

    def __len__(self):
        return len(self.plans)

    def batch(self, size):
        sides = sorted(self.by_side)
        counts = np.array([len(self.by_side[s]) for s in sides], float)
        s = sides[int(self.rng.choice(len(sides), p=counts / counts.sum()))]
        chosen = [self.by_side[s][int(i)] for i in self.rng.integers(0, len(self.by_side[s]), size)]
        k = max(len(self.plans[i]["boxes"]) for i in chosen)
        out = []
        for i in chosen:
            plan = self.plans[i]
            rgb, feats = self.windows.window(i, 0, 0, self.side)
            sample = self.hints.sample(rgb)
            sample.update(("f%d" % st, f) for st, f in zip(STRIDES, feats))
            hint_ab, hint_mask = sample["hint_ab"].transpose(1, 2, 0), sample["hint_mask"][0]
            inst = {"inst_l": np.zeros((k, 1, s, s), np.float32), "inst_hint_ab": np.zeros((k, 2, s, s), np.float32),
                    "inst_hint_mask": np.zeros((k, 1, s, s), np.float32), "boxes": np.zeros((k, 4), np.float32)}
            for name, ch, st in zip(FEATURE_NAMES, FEATURE_CHANNELS, STRIDES):
                inst["inst_" + name] = np.zeros((k, ch, s // st, s // st), np.float32)
            for j, box in enumerate(plan["boxes"]):
                crop, crop_feats = self.inst[s].window(plan["inst_index"] + j, 0, 0, s)
                inst["inst_l"][j, 0] = rgb_to_lab(crop)[..., 0]
                for name, f in zip(FEATURE_NAMES, crop_feats):
                    inst["inst_" + name][j] = f
                ab, m = crop_hints(hint_ab, hint_mask, box, s)
                inst["inst_hint_ab"][j], inst["inst_hint_mask"][j, 0] = ab.transpose(2, 0, 1), m
                inst["boxes"][j] = np.asarray(box, np.float32) / self.side
            sample.update(inst)
            out.append(sample)
        return {key: np.stack([o[key] for o in out]).astype(np.float32) for key in out[0]}


def fused_head_loss(model, batch, bins):
    ab, logits = model(batch["f4"], batch["f8"], batch["f16"], batch["f32"], batch["l"], batch["hint_ab"],
                       batch["hint_mask"], batch["global_hints"], batch["hint_prop"],
                       *(batch["inst_" + n] for n in FEATURE_NAMES), batch["inst_l"], batch["inst_hint_ab"],
                       batch["inst_hint_mask"], batch["boxes"])
    return colorization_loss(ab, logits, batch, bins)


def train_fusion(corpus, out_dir, full_weights, instance_weights, steps=1000, batch_size=8, lr=5e-4, seed=0,
                 limit=None, box_cache=None, feature_cache=None, per_photo=2, stages=DEFAULT_STAGES,
                 checkpoint_every=100, threads=None, log=print, progress=True):
    """Stage 3: both heads frozen (BatchNorm statistics too), the fusion layers learn."""
    device = begin_stage(out_dir, threads, seed)
    full, full_state = load_head_weights(full_weights)
    inst, inst_state = load_head_weights(instance_weights)
    resume = _resume(out_dir, "fusion")
    if resume:
        stages = tuple(resume["stages"])
    model = LiteFusionHead(full, inst, stages=stages)
    if resume:
        model.load_state_dict(resume["model"])
    model.to(device)
    freeze(model.full, model.instance)
    model.fusion.train()
    items, encoder = _photos_with_boxes(corpus, out_dir, box_cache, limit, log, progress)
    batches = FusionBatches(fusion_cache(items, feature_cache or os.path.join(out_dir, "windows"), encoder,
                                         per_photo, seed=seed, progress=progress), seed)
    log("fusion stage (lite0): %d windows with boxes" % len(batches))
    extra = {"model_name": MODEL_NAME, "stages": list(model.stages), "inst_size": OBJECT_SIDE,
             "full_weights": os.path.abspath(full_weights), "instance_weights": os.path.abspath(instance_weights),
             "full_step": full_state["step"], "instance_step": inst_state["step"]}
    return train_steps("fusion", model, list(model.fusion.parameters()), batches, fused_head_loss, out_dir, steps,
                       batch_size, lr, extra, resume, log, progress, checkpoint_every, device)


def load_fused_head(path, map_location="cpu"):
    """A lite0 fusion-stage checkpoint -> (LiteFusionHead in eval mode, state)."""
    state = torch.load(path, map_location=map_location, weights_only=False)
    if state.get("stage") != "fusion" or state.get("model_name") != MODEL_NAME:
        raise ValueError("%s is not a %s fusion-stage checkpoint" % (path, MODEL_NAME))
    model = LiteFusionHead(stages=tuple(state["stages"]))
    model.load_state_dict(state["model"])
    return model.eval(), state


def export_fused_lite0(ckpt_path, out_path, max_instances=MAX_INSTANCES):
    """Fusion checkpoint -> the fused head's ONNX (engine/instance_aware.FusedModel runs it), with
    the encoder beside it (written there unless already present: it is the full model's encoder)."""
    from .. import __version__
    from ..models.fusion_lite0 import export_fused_head
    from .export import ENCODER_FILE, export_encoder

    model, state = load_fused_head(ckpt_path)
    enc_path = os.path.join(os.path.dirname(os.path.abspath(out_path)), ENCODER_FILE)
    if not os.path.exists(enc_path):
        export_encoder(enc_path)
    meta = {"tinct_version": __version__, "model_name": MODEL_NAME, "stage": "fusion", "train_step": str(state["step"]),
            "max_instances": str(max_instances), "inst_size": str(state.get("inst_size", OBJECT_SIDE)),
            "size_multiple": str(MULTIPLE), "encoder": ENCODER_FILE, "fused_layers": ",".join(model.stages),
            "boxes": "x0,y0,x1,y1 in [0,1] of the padded canvas", "dynamic_instances": "true",
            # the full branch must be the shipped full model's head: export both from the same weights
            "full_train_step": str(state.get("full_step", "")),
            "instance_train_step": str(state.get("instance_step", ""))}
    return export_fused_head(model, out_path, metadata=meta)
