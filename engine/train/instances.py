"""Instance-aware training in three stages (Su, Chu and Huang 2020), on ../shared/corpus only.

  full      the full-image ColorNet, trained on whole photos: the core loop
            (engine/train/loop.py); its checkpoint seeds the next two stages.
  instance  a ColorNet of the same layout, initialized from the full network,
            trained on object crops: a detector box of a corpus photo (jittered a
            little), cropped from the scaled photo and resized to the working
            resolution (`inst_size`, square), flipped at random, with hints
            simulated on the crop as in the core issue.
  fusion    the InstanceFusionNet (engine/models/fusion.py): both networks are
            loaded and frozen, only the fusion modules (weight nets) learn, as in
            the paper. A sample is a random scaled crop of a photo with its
            boxes (moved into the crop and clipped); hints are simulated on the
            whole crop, and the hints inside a box also feed that instance's
            crop (`engine.detect.crop_hints`). The loss is the core loss on the
            fused output.

Detector boxes for the corpus are computed once (gray photos, like at run time)
and cached in a .npz (`cache_boxes`; by default runs/boxes_<corpus name>.npz next
to the stage's run folder), which the other stage and reruns read. Every stage resumes from OUT/checkpoint.pt like the core loop.

`run_stage(stage, corpus, out_dir, ...)` is what `tinct train --stage` calls.
"""

import json
import os

import numpy as np
import torch
from PIL import Image
from torch.nn import functional as F

from ..color import rgb_to_lab
from ..detect import MAX_INSTANCES, MIN_BOX_FRAC, crop_hints
from ..levin import propagate_hints
from ..models.colornet import ColorNet
from ..models.config import CONFIGS
from ..models.fusion import DEFAULT_LAYERS, FUSED_LAYERS, InstanceFusionNet, export_fused_onnx
from .data import HintSimulator, list_images
from .loop import (CHECKPOINT, begin_stage, compute_loss, freeze, load_model, soft_targets, train_steps,
                   without_retired)

STAGES = ("full", "instance", "fusion")


# ----------------------------------------------------------------------------- box cache


def cache_boxes(corpus, cache_path, detector=None, limit=None, log=print, progress=True):
    """Detector boxes of every corpus photo, computed once and kept in `cache_path` (.npz).

    Arrays: names (M,) file names, sizes (M, 2) height/width, boxes (M, 8, 4) in [0, 1]
    (x0, y0, x1, y1), scores (M, 8), classes (M, 8), counts (M,). Photos already in the
    cache (same name and size) are not detected again. Returns {name: (boxes (k, 4), scores (k,))}.
    """
    paths = list_images(corpus)
    if limit:
        paths = paths[:limit]
    old = {}
    if os.path.exists(cache_path):
        with np.load(cache_path, allow_pickle=False) as z:
            for i, name in enumerate(z["names"]):
                old[str(name)] = (tuple(z["sizes"][i]), z["boxes"][i], z["scores"][i], z["classes"][i], int(z["counts"][i]))
    todo = []
    for p in paths:
        with Image.open(p) as im:  # reads the header only
            size = (im.height, im.width)
        cached = old.get(os.path.basename(p))
        if cached is None or tuple(int(v) for v in cached[0]) != size:
            todo.append(p)
    if todo:
        if detector is None:
            from ..detect import Detector

            detector = Detector()
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=len(todo), desc="detect boxes", unit="photo")
        for p in todo:
            with Image.open(p) as im:
                gray = np.asarray(im.convert("L"))
            h, w = gray.shape
            det = detector.detect(gray, max_boxes=MAX_INSTANCES)
            boxes = np.zeros((MAX_INSTANCES, 4), np.float32)
            scores = np.zeros(MAX_INSTANCES, np.float32)
            classes = np.full(MAX_INSTANCES, -1, np.int64)
            k = len(det)
            boxes[:k] = det.boxes / np.array([w, h, w, h], np.float32)
            scores[:k] = det.scores
            classes[:k] = det.classes
            old[os.path.basename(p)] = ((h, w), boxes, scores, classes, k)
            if bar:
                bar.update(1)
        if bar:
            bar.close()
        names = sorted(old)
        tmp = cache_path + ".tmp.npz"
        np.savez_compressed(tmp, names=np.array(names), sizes=np.array([old[n][0] for n in names], np.int64),
                            boxes=np.stack([old[n][1] for n in names]), scores=np.stack([old[n][2] for n in names]),
                            classes=np.stack([old[n][3] for n in names]),
                            counts=np.array([old[n][4] for n in names], np.int64))
        os.replace(tmp, cache_path)
        log("boxes: detected %d photos, cache %s (%d photos)" % (len(todo), cache_path, len(names)))
    out = {}
    for p in paths:
        _, boxes, scores, _, k = old[os.path.basename(p)]
        out[os.path.basename(p)] = (boxes[:k], scores[:k])
    return out


def default_box_cache(corpus, out_dir):
    """runs/<stage>/ -> runs/boxes_<corpus name>.npz, shared by the instance and fusion stages."""
    parent = os.path.dirname(os.path.abspath(out_dir))
    return os.path.join(parent, "boxes_%s.npz" % (os.path.basename(os.path.normpath(corpus)) or "corpus"))


def _usable(boxes, h, w, min_frac=MIN_BOX_FRAC):
    """Keep normalized boxes whose sides are at least min_frac of the short side."""
    if len(boxes) == 0:
        return boxes
    px = boxes * np.array([w, h, w, h], np.float32)
    short = min(h, w) * min_frac
    ok = ((px[:, 2] - px[:, 0]) >= short) & ((px[:, 3] - px[:, 1]) >= short)
    return boxes[ok]


def load_photos_with_boxes(corpus, cache_path, limit=None, log=print, progress=True):
    """-> list of (rgb uint8 (H, W, 3), boxes (k, 4) in [0, 1]) for every corpus photo."""
    boxes = cache_boxes(corpus, cache_path, limit=limit, log=log, progress=progress)
    paths = list_images(corpus)
    if limit:
        paths = paths[:limit]
    items = []
    for p in paths:
        with Image.open(p) as im:
            rgb = np.asarray(im.convert("RGB"))
        h, w = rgb.shape[:2]
        items.append((rgb, _usable(boxes[os.path.basename(p)][0], h, w)))
    return items


# ----------------------------------------------------------------------------- samples


def _crop_rgb(rgb, box_px, size):
    """RGB uint8 region (float box in pixels) -> (size, size, 3) uint8, antialiased bilinear."""
    return np.asarray(Image.fromarray(rgb).resize((size, size), Image.BILINEAR, box=tuple(float(v) for v in box_px),
                                                  reducing_gap=None))


def _sample_dict(rgb, hints, with_prop=False):
    """with_prop: also the hints propagated along edges, which only the full network takes
    (instance networks see their crop's hints alone, in training as in the fused model)."""
    lab = rgb_to_lab(rgb)
    ab = lab[..., 1:]
    hint_ab, mask = hints.local(ab)
    n = rgb.shape[0] // 4
    ab_small = ab.reshape(n, 4, n, 4, 2).mean((1, 3))
    out = {"l": lab[..., 0][None], "ab": ab.transpose(2, 0, 1), "hint_ab": hint_ab.transpose(2, 0, 1),
           "hint_mask": mask[None], "global_hints": hints.global_vector(rgb, ab_small)}
    if with_prop:
        out["hint_prop"] = propagate_hints(lab[..., 0], hint_ab, mask).transpose(2, 0, 1)
    return out


class InstanceBatchMaker:
    """Stage `instance`: crops of detector boxes resized to (size, size)."""

    def __init__(self, items, size=128, seed=0, jitter=0.1):
        self.items = [(rgb, b) for rgb, b in items if len(b)]
        if not self.items:
            raise ValueError("no corpus photo has a usable detector box")
        self.size = size
        self.jitter = jitter
        self.rng = np.random.default_rng(seed)
        self.hints = HintSimulator(self.rng)

    def sample(self):
        rgb, boxes = self.items[int(self.rng.integers(len(self.items)))]
        h, w = rgb.shape[:2]
        x0, y0, x1, y1 = boxes[int(self.rng.integers(len(boxes)))] * np.array([w, h, w, h])
        bw, bh = x1 - x0, y1 - y0
        x0, x1 = x0 + self.rng.uniform(-self.jitter, self.jitter) * bw, x1 + self.rng.uniform(-self.jitter, self.jitter) * bw
        y0, y1 = y0 + self.rng.uniform(-self.jitter, self.jitter) * bh, y1 + self.rng.uniform(-self.jitter, self.jitter) * bh
        x0, y0, x1, y1 = max(0.0, x0), max(0.0, y0), min(float(w), x1), min(float(h), y1)
        crop = _crop_rgb(rgb, (x0, y0, max(x1, x0 + 1), max(y1, y0 + 1)), self.size)
        if self.rng.random() < 0.5:
            crop = np.ascontiguousarray(crop[:, ::-1])
        return _sample_dict(crop, self.hints)

    def batch(self, n):
        samples = [self.sample() for _ in range(n)]
        return {k: np.stack([s[k] for s in samples]).astype(np.float32) for k in samples[0]}


class FusionBatchMaker:
    """Stage `fusion`: a scaled random square crop of a photo with its boxes moved into
    the crop, plus each box's instance crop (taken from the scaled photo) and hints."""

    def __init__(self, items, crop=128, inst_size=128, seed=0, max_zoom=1.5, p_with_boxes=0.85,
                 max_instances=MAX_INSTANCES, min_visible=0.3):
        self.items = items
        self.with_boxes = [i for i, (_, b) in enumerate(items) if len(b)]
        self.crop = crop
        self.inst_size = inst_size
        self.max_zoom = max_zoom
        self.p_with_boxes = p_with_boxes
        self.max_instances = max_instances
        self.min_visible = min_visible
        self.rng = np.random.default_rng(seed)
        self.hints = HintSimulator(self.rng)

    def sample(self):
        if self.with_boxes and self.rng.random() < self.p_with_boxes:
            rgb, boxes = self.items[self.with_boxes[int(self.rng.integers(len(self.with_boxes)))]]
        else:
            rgb, boxes = self.items[int(self.rng.integers(len(self.items)))]
        h, w = rgb.shape[:2]
        c = self.crop
        short = min(h, w)
        # the photo's short side becomes crop .. crop * max_zoom, so the crop keeps most of the scene
        # and its objects (the core BatchMaker zooms in further, which cuts most boxes away)
        target = self.rng.uniform(c, max(c, min(short, c * self.max_zoom)))
        scale = target / short
        nh, nw = max(c, int(round(h * scale))), max(c, int(round(w * scale)))
        scaled = rgb if (nh, nw) == (h, w) else np.asarray(
            Image.fromarray(rgb).resize((nw, nh), Image.BILINEAR, reducing_gap=2.0))
        oy = int(self.rng.integers(0, nh - c + 1))
        ox = int(self.rng.integers(0, nw - c + 1))
        flip = self.rng.random() < 0.5
        window = scaled[oy:oy + c, ox:ox + c]
        if flip:
            window = window[:, ::-1]
        window = np.ascontiguousarray(window)
        s = _sample_dict(window, self.hints, with_prop=True)
        # boxes: photo [0, 1] -> scaled pixels -> window pixels, clipped; keep mostly visible ones
        kept = []
        for b in boxes:
            px = b * np.array([nw, nh, nw, nh])
            area = (px[2] - px[0]) * (px[3] - px[1])
            q = np.clip(px - np.array([ox, oy, ox, oy]), 0, c)
            vis = (q[2] - q[0]) * (q[3] - q[1])
            if area > 0 and vis / area >= self.min_visible and min(q[2] - q[0], q[3] - q[1]) >= 4:
                kept.append(q)
        if len(kept) > self.max_instances:
            order = np.argsort([-(q[2] - q[0]) * (q[3] - q[1]) for q in kept])[:self.max_instances]
            kept = [kept[i] for i in sorted(order)]
        k, S = len(kept), self.inst_size
        inst = {"inst_l": np.zeros((k, 1, S, S), np.float32), "inst_hint_ab": np.zeros((k, 2, S, S), np.float32),
                "inst_hint_mask": np.zeros((k, 1, S, S), np.float32), "boxes": np.zeros((k, 4), np.float32)}
        hint_ab = s["hint_ab"].transpose(1, 2, 0)
        hint_mask = s["hint_mask"][0]
        for i, q in enumerate(kept):
            src = (q[0] + ox, q[1] + oy, q[2] + ox, q[3] + oy)  # the same region in the scaled photo (sharper)
            crop = _crop_rgb(scaled, src, S)
            if flip:
                crop = np.ascontiguousarray(crop[:, ::-1])
                q = np.array([c - q[2], q[1], c - q[0], q[3]])
            inst["inst_l"][i, 0] = rgb_to_lab(crop)[..., 0]
            ab, m = crop_hints(hint_ab, hint_mask, q, S)  # hints inside the box feed the instance
            inst["inst_hint_ab"][i] = ab.transpose(2, 0, 1)
            inst["inst_hint_mask"][i, 0] = m
            inst["boxes"][i] = np.asarray(q, np.float32) / c
        s.update(inst)
        return s

    def batch(self, n):
        samples = [self.sample() for _ in range(n)]
        k = max(1, max(len(s["boxes"]) for s in samples))  # pad to the most boxes in this batch
        out = {key: np.stack([s[key] for s in samples]).astype(np.float32)
               for key in ("l", "ab", "hint_ab", "hint_mask", "global_hints", "hint_prop")}
        for key in ("inst_l", "inst_hint_ab", "inst_hint_mask", "boxes"):
            arr = np.zeros((n, k) + samples[0][key].shape[1:], np.float32)
            for i, s in enumerate(samples):
                arr[i, :len(s[key])] = s[key]
            out[key] = arr
        return out


# ----------------------------------------------------------------------------- losses and checkpoints


def fused_loss(model, batch, bins, dist_weight=0.5, huber_delta=5.0):
    ab_pred, logits = model(batch["l"], batch["hint_ab"], batch["hint_mask"], batch["global_hints"],
                            batch["inst_l"], batch["inst_hint_ab"], batch["inst_hint_mask"], batch["boxes"],
                            batch.get("hint_prop"))
    reg = F.huber_loss(ab_pred, batch["ab"], delta=huber_delta) / huber_delta
    target = soft_targets(F.avg_pool2d(batch["ab"], 4), bins)
    ce = -(target * F.log_softmax(logits, dim=1)).sum(1).mean()
    return reg + dist_weight * ce, {"huber": reg.item(), "ce": ce.item()}


def load_fused(ckpt_path, map_location="cpu"):
    """A fusion-stage checkpoint -> (InstanceFusionNet in eval mode, state dict)."""
    state = torch.load(ckpt_path, map_location=map_location, weights_only=False)
    if state.get("stage") != "fusion":
        raise ValueError("%s is not a fusion-stage checkpoint" % ckpt_path)
    model = InstanceFusionNet(CONFIGS[state["model_name"]], layers=tuple(state.get("layers", FUSED_LAYERS)))
    model.load_state_dict(without_retired(state["model"]))
    return model.eval(), state


def export_fused(ckpt_path, out_path, max_instances=MAX_INSTANCES, opset=17, dynamic_instances=True):
    """Fusion checkpoint -> ONNX for the pipeline (engine/instance_aware.py).

    dynamic_instances (default): the slot count is dynamic, so the pipeline passes only the
    instances it uses (at most `max_instances`, recorded in the metadata) and pays nothing
    for padding; False gives `max_instances` fixed slots (see engine.models.fusion.FusedExport)."""
    from .. import __version__

    model, state = load_fused(ckpt_path)
    meta = {"tinct_version": __version__, "model_name": state["model_name"], "config": json.dumps(state["config"]),
            "train_step": str(state["step"]), "stage": "fusion", "max_instances": str(max_instances),
            "inst_size": str(state.get("inst_size", 128)), "size_multiple": "8",
            "boxes": "x0,y0,x1,y1 in [0,1]; unused slots all zero", "fused_layers": ",".join(model.layers),
            "dynamic_instances": str(bool(dynamic_instances)).lower(),
            # the full branch must be the shipped full model: export both from the same full checkpoint
            "full_train_step": str(state.get("full_step", "")), "instance_train_step": str(state.get("instance_step", ""))}
    return export_fused_onnx(model, out_path, max_instances=max_instances, opset=opset, metadata=meta,
                             dynamic_instances=dynamic_instances)


# ----------------------------------------------------------------------------- stages


def _resume(out_dir, stage):
    path = os.path.join(out_dir, CHECKPOINT)
    if not os.path.exists(path):
        return None
    state = torch.load(path, map_location="cpu", weights_only=False)
    if state.get("stage", "full") != stage:
        raise ValueError("%s holds a %r-stage checkpoint, not %r; use another --out" % (path, state.get("stage", "full"), stage))
    return state


def train_instance(corpus, out_dir, full_checkpoint, steps=2000, batch_size=16, inst_size=128, lr=2e-4, seed=0,
                   limit=None, box_cache=None, checkpoint_every=100, threads=None, log=print, progress=True):
    """Stage 2: the instance ColorNet, initialized from the full network, on object crops."""
    device = begin_stage(out_dir, threads, seed)
    full, full_state = load_model(full_checkpoint)
    model_name = full_state["model_name"]
    model = ColorNet(CONFIGS[model_name])
    resume = _resume(out_dir, "instance")
    model.load_state_dict(resume["model"] if resume else full.state_dict())
    model.to(device).train()
    items = load_photos_with_boxes(corpus, box_cache or default_box_cache(corpus, out_dir), limit, log, progress)
    maker = InstanceBatchMaker(items, size=inst_size, seed=seed)
    log("instance stage: %d photos with usable boxes" % len(maker.items))
    extra = {"model_name": model_name, "config": CONFIGS[model_name].to_dict(), "inst_size": inst_size,
             "full_checkpoint": os.path.abspath(full_checkpoint)}
    return train_steps("instance", model, model.parameters(), maker, compute_loss, out_dir, steps, batch_size, lr,
                       extra, resume, log, progress, checkpoint_every, device)


def train_fusion(corpus, out_dir, full_checkpoint, instance_checkpoint, steps=2000, batch_size=8, crop=128,
                 inst_size=128, lr=5e-4, seed=0, limit=None, box_cache=None, checkpoint_every=100, threads=None,
                 max_instances=MAX_INSTANCES, layers=DEFAULT_LAYERS, log=print, progress=True):
    """Stage 3: both networks frozen, the fusion modules learn on photos with their boxes.
    `layers`: which block outputs are fused (default conv2 .. conv9, see engine.models.fusion)."""
    device = begin_stage(out_dir, threads, seed)
    full, full_state = load_model(full_checkpoint)
    inst, inst_state = load_model(instance_checkpoint)
    if inst_state["model_name"] != full_state["model_name"]:
        raise ValueError("full (%s) and instance (%s) networks differ in size"
                         % (full_state["model_name"], inst_state["model_name"]))
    model_name = full_state["model_name"]
    resume = _resume(out_dir, "fusion")
    if resume:
        layers = tuple(resume.get("layers", FUSED_LAYERS))
    model = InstanceFusionNet.from_full(full, inst, layers=layers)
    if resume:
        model.load_state_dict(without_retired(resume["model"]))
    model.to(device)
    freeze(model.full, model.instance)
    model.fusion.train()
    items = load_photos_with_boxes(corpus, box_cache or default_box_cache(corpus, out_dir), limit, log, progress)
    maker = FusionBatchMaker(items, crop=crop, inst_size=inst_size, seed=seed, max_instances=max_instances)
    log("fusion stage: %d photos, %d with usable boxes" % (len(items), len(maker.with_boxes)))
    extra = {"model_name": model_name, "config": CONFIGS[model_name].to_dict(), "inst_size": inst_size,
             "full_checkpoint": os.path.abspath(full_checkpoint), "layers": list(model.layers),
             "instance_checkpoint": os.path.abspath(instance_checkpoint), "full_step": full_state["step"],
             "instance_step": inst_state["step"]}
    return train_steps("fusion", model, list(model.fusion_parameters()), maker, fused_loss, out_dir, steps,
                       batch_size, lr, extra, resume, log, progress, checkpoint_every, device)


def run_stage(stage, corpus, out_dir, full_checkpoint=None, instance_checkpoint=None, model_name="small",
              steps=2000, batch_size=16, crop=128, inst_size=None, lr=None, seed=0, limit=None, box_cache=None,
              checkpoint_every=100, threads=None, layers=DEFAULT_LAYERS, log=print, progress=True,
              schedule="joint", init=None, loss="huber", holdout=0, eval_every=500, workers=0):
    """`tinct train --stage full|instance|fusion`. Returns the checkpoint path.

    full:     the core loop (engine.train.loop.train); `full_checkpoint` is ignored.
    instance: needs full_checkpoint.   fusion: needs full_checkpoint and instance_checkpoint.
    inst_size defaults to `crop` (instance crops at the working resolution).
    """
    if stage not in STAGES:
        raise ValueError("unknown stage %r (choose from %s)" % (stage, ", ".join(STAGES)))
    inst_size = inst_size or crop
    if stage == "full":
        from .loop import train

        return train(corpus, out_dir, model_name=model_name, steps=steps, batch_size=batch_size, crop=crop,
                     lr=lr or 5e-4, seed=seed, limit=limit, checkpoint_every=checkpoint_every, threads=threads,
                     log=log, progress=progress, schedule=schedule, init=init,
                     loss=loss, holdout=holdout, eval_every=eval_every, workers=workers)
    if not full_checkpoint or not os.path.exists(full_checkpoint):
        raise FileNotFoundError("stage %s needs the full network's checkpoint (--full-checkpoint), got %r"
                                % (stage, full_checkpoint))
    if stage == "instance":
        return train_instance(corpus, out_dir, full_checkpoint, steps=steps, batch_size=batch_size,
                              inst_size=inst_size, lr=lr or 2e-4, seed=seed, limit=limit, box_cache=box_cache,
                              checkpoint_every=checkpoint_every, threads=threads, log=log, progress=progress)
    if not instance_checkpoint or not os.path.exists(instance_checkpoint):
        raise FileNotFoundError("stage fusion needs the instance network's checkpoint (--instance-checkpoint), got %r"
                                % (instance_checkpoint,))
    return train_fusion(corpus, out_dir, full_checkpoint, instance_checkpoint, steps=steps, batch_size=batch_size,
                        crop=crop, inst_size=inst_size, lr=lr or 5e-4, seed=seed, limit=limit, box_cache=box_cache,
                        checkpoint_every=checkpoint_every, threads=threads, layers=layers, log=log,
                        progress=progress)
