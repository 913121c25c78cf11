"""Instance-aware inference (Su, Chu and Huang 2020) for the pipeline.

Decides which objects get colorized on their own (`instances`: "auto" = the
offline detector, "none", or a list of user masks), cuts their crops and hints,
and runs the fused ONNX model (full network + instance network + fusion modules
in one graph, see engine/models/fusion.py). Everything here is numpy and
onnxruntime; torch is never imported at inference time.

The fused model is used only when its file is present
(engine/weights/tinct-lite0-instances.onnx, or TINCT_FUSED_MODEL, or an explicit
path); without it, and whenever no object is left to fuse, the pipeline runs
the full network alone and says so in the result's info.
"""

import os
import warnings
from dataclasses import dataclass, field

import numpy as np

from . import TinctError
from .color import gray_to_l, rgb_to_l
from .detect import MAX_INSTANCES, MIN_BOX_FRAC, boxes_from_masks, crop_hints, crop_resize, normalized_boxes

WEIGHTS_DIR = os.path.join(os.path.dirname(__file__), "weights")
DEFAULT_FUSED_MODEL = os.path.join(WEIGHTS_DIR, "tinct-lite0-instances.onnx")
MODES = ("auto", "none")
DETECT_CANDIDATES = 100  # boxes fetched from the detector before the size filter and the cut
MAX_CROP_SOURCE = 4_000_000  # pixels of a box region read at full resolution before decimation
MIN_INST_SIZE = 16
# the fused graph's interface (engine/models/fusion.py exports it)
FUSED_INPUTS = ("l", "hint_ab", "hint_mask", "global_hints", "inst_l", "inst_hint_ab", "inst_hint_mask", "boxes",
                "hint_prop")
FUSED_OUTPUTS = ("ab", "dist_logits")
# the pretrained-encoder network's fused head (engine/models/fusion_lite0.py exports it): the
# encoder's features of the photo and of the crops come in beside the small network's inputs
FEATURES = ("f4", "f8", "f16", "f32")
FUSED_HEAD_INPUTS = FEATURES + ("l", "hint_ab", "hint_mask", "global_hints", "hint_prop") + tuple(
    "inst_" + n for n in FEATURES) + ("inst_l", "inst_hint_ab", "inst_hint_mask", "boxes")


def default_fused_path(model_path=None):
    """The fused model that goes with the full model: TINCT_FUSED_MODEL, else the shipped file.

    With an explicit full model (--model) there is no default pairing: a fused file
    carries its own full network, so it would silently replace the one asked for.
    """
    env = os.environ.get("TINCT_FUSED_MODEL")
    if env:
        return env
    if model_path is None and not os.environ.get("TINCT_MODEL") and os.path.exists(DEFAULT_FUSED_MODEL):
        return DEFAULT_FUSED_MODEL
    return None


def check_instances_arg(instances):
    """None, "auto", "none" or a list of masks; anything else is the caller's mistake."""
    if instances is None or (isinstance(instances, str) and instances in MODES):
        return instances
    if isinstance(instances, str):
        raise TinctError("instances must be 'auto', 'none' or a list of masks, not %r" % instances)
    if not isinstance(instances, (list, tuple)):
        raise TinctError("instances must be 'auto', 'none' or a list of masks, got %s" % type(instances).__name__)
    return list(instances)


@dataclass
class InstancePlan:
    """The objects one photo is colorized with (boxes in photo pixels, x1/y1 exclusive)."""

    mode: str  # "auto", "masks" or "none"
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    labels: list = field(default_factory=list)
    scores: list = field(default_factory=list)
    found: int = 0  # candidates before the size filter and the max-instances cut
    messages: list = field(default_factory=list)
    model: str = "full"  # which network produced the colors: "fused" or "full"

    @property
    def used(self):
        return len(self.boxes)

    def info(self):
        d = {"mode": self.mode, "model": self.model, "found": int(self.found), "used": self.used,
             "boxes": [[round(float(v), 1) for v in b] for b in self.boxes], "messages": list(self.messages)}
        if self.labels:
            d["labels"] = list(self.labels)
            d["scores"] = [round(float(s), 3) for s in self.scores]
        return d


def plan_auto(photo, detector, max_instances=MAX_INSTANCES, min_box_frac=MIN_BOX_FRAC):
    """Detector boxes: objects smaller than `min_box_frac` of the short side are left to the
    full network (the instance network never trained on them), then the most confident
    `max_instances` are kept."""
    h, w = photo.shape[:2]
    det = detector.detect(photo, max_boxes=DETECT_CANDIDATES)
    plan = InstancePlan("auto", found=det.found)
    if len(det) == 0:
        plan.messages.append("no objects found; the full network colorized the photo alone")
        return plan
    sides = np.minimum(det.boxes[:, 2] - det.boxes[:, 0], det.boxes[:, 3] - det.boxes[:, 1])
    big = np.nonzero(sides >= min_box_frac * min(h, w))[0]
    small = len(det) - len(big)
    keep = big[:max_instances]
    plan.boxes = det.boxes[keep].astype(np.float32)
    plan.labels = [det.labels[i] for i in keep]
    plan.scores = [float(det.scores[i]) for i in keep]
    if small:
        plan.messages.append("%d object%s too small to colorize on %s own" % (
            small, "s" if small > 1 else "", "their" if small > 1 else "its"))
    if len(big) > max_instances:
        plan.messages.append("%d objects found, the %d most confident used" % (len(big), max_instances))
    if not len(keep):
        plan.messages.append("no objects large enough; the full network colorized the photo alone")
    return plan


def plan_masks(masks, height, width, max_instances=MAX_INSTANCES):
    """User masks -> boxes; empty or outside masks are skipped with a warning (boxes_from_masks)."""
    boxes, used, messages = boxes_from_masks(masks, height, width, max_instances=max_instances)
    plan = InstancePlan("masks", boxes=boxes, found=len(masks), messages=list(messages))
    if not len(boxes):
        plan.messages.append("no usable instance mask; the full network colorized the photo alone")
    return plan


def crop_l(photo, box, size):
    """The photo's L inside `box` (photo pixels, fractional) resized to (size, size).

    Only the box's region is converted to L; a region over MAX_CROP_SOURCE pixels is
    first decimated by an integer step, so a 100 MP photo costs no full-size plane.
    """
    h, w = photo.shape[:2]
    x0, y0, x1, y1 = (float(v) for v in box)
    ix0, iy0 = max(0, int(np.floor(x0))), max(0, int(np.floor(y0)))
    ix1, iy1 = min(w, int(np.ceil(x1))), min(h, int(np.ceil(y1)))
    step = max(1, int(np.sqrt((ix1 - ix0) * (iy1 - iy0) / float(MAX_CROP_SOURCE))))
    region = photo[iy0:iy1:step, ix0:ix1:step]
    l = gray_to_l(region) if region.ndim == 2 else rgb_to_l(region[..., :3])
    local = ((x0 - ix0) / step, (y0 - iy0) / step, (x1 - ix0) / step, (y1 - iy0) / step)
    return crop_resize(l, local, size)


def crop_side(h, w, k, inst_size, multiple=8, minimum=MIN_INST_SIZE):
    """Instance crops at the resolution the instance network trained at, but never above the
    working grid, and all k crops together at most the working grid's pixels: the instance
    branch then costs about one more network, however many objects (the 2x speed target at 8),
    in multiples of what the network takes (8, or the pretrained encoder's 32)."""
    budget = int(np.sqrt(h * w / float(max(1, k))))
    return max(minimum, (min(inst_size, h, w, budget) // multiple) * multiple)


class FusedModel:
    """The fused ONNX graph on onnxruntime: the small network's (inputs FUSED_INPUTS: both networks
    and the fusion in one graph), or the pretrained-encoder network's fused head (FUSED_HEAD_INPUTS),
    whose encoder runs apart on the photo and on the crops, its features cached for hint edits."""

    def __init__(self, path, device="auto", threads=None):
        from .runtime import ModelRuntime

        self.runtime = ModelRuntime(path, device, threads)
        self.path = path
        self.device = self.runtime.device
        session = self.runtime.session
        names = [i.name for i in session.get_inputs()]
        self.pretrained = self.runtime.encoder is not None
        if names != list(FUSED_HEAD_INPUTS if self.pretrained else FUSED_INPUTS):
            raise TinctError("%s is not an instance-aware (fused) model: its inputs are %s" % (path, ", ".join(names)))
        slots = {i.name: i.shape for i in session.get_inputs()}["boxes"][0]
        self.dynamic_slots = not isinstance(slots, int)
        meta = self.runtime.metadata
        self.max_instances = int(meta.get("max_instances", slots if isinstance(slots, int) else MAX_INSTANCES))
        if not self.dynamic_slots:
            self.max_instances = min(self.max_instances, slots)
        self.inst_size = int(meta.get("inst_size", 128))

    def crop_side(self, h, w, k=1):
        if self.pretrained:
            return crop_side(h, w, k, self.inst_size, self.runtime.multiple, 2 * self.runtime.multiple)
        return crop_side(h, w, k, self.inst_size)

    def inputs(self, photo, boxes, hint_ab, hint_mask, h, w):
        """Instance inputs for boxes (photo pixels); hints come from the working grid (h, w)."""
        H, W = photo.shape[:2]
        s = self.crop_side(h, w, len(boxes))
        k = len(boxes) if self.dynamic_slots else self.max_instances
        out = {"inst_l": np.zeros((k, 1, s, s), np.float32), "inst_hint_ab": np.zeros((k, 2, s, s), np.float32),
               "inst_hint_mask": np.zeros((k, 1, s, s), np.float32), "boxes": np.zeros((k, 4), np.float32)}
        to_grid = np.array([w / float(W), h / float(H)] * 2, np.float32)
        for i, box in enumerate(boxes):
            out["inst_l"][i, 0] = crop_l(photo, box, s)
            ab, mask = crop_hints(hint_ab, hint_mask, np.asarray(box, np.float32) * to_grid, s)
            out["inst_hint_ab"][i] = ab.transpose(2, 0, 1)
            out["inst_hint_mask"][i, 0] = mask
        out["boxes"][:len(boxes)] = normalized_boxes(boxes, H, W)
        return out

    def run(self, l_low, hint_ab, hint_mask, global_vec, inst, hint_prop):
        """Working-grid inputs (as the full network takes them, hint_prop (h, w, 3) included)
        + instance inputs -> ab (h, w, 2)."""
        feeds = {"l": l_low[None, None], "hint_ab": hint_ab.transpose(2, 0, 1)[None],
                 "hint_mask": hint_mask[None, None], "global_hints": global_vec[None],
                 "hint_prop": hint_prop.transpose(2, 0, 1)[None]}
        feeds.update(inst)
        feeds = {k: np.ascontiguousarray(v, np.float32) for k, v in feeds.items()}
        if self.pretrained:
            return self._run_pretrained(feeds)
        ab, _ = self.runtime.session.run(list(FUSED_OUTPUTS), feeds)
        return ab[0].transpose(1, 2, 0)

    def _run_pretrained(self, feeds):
        """The encoder on the photo and on the crops (each cached by its pixels), then the fused head
        on sides padded to the encoder's multiple (as ModelRuntime runs the full network); boxes move
        to the padded canvas."""
        from .runtime import pad_to

        rt = self.runtime
        h, w = feeds["l"].shape[2:]
        l = pad_to(feeds["l"], rt.multiple, "edge")
        hp, wp = l.shape[2:]
        run = dict(zip(rt.feature_names, rt.encode(l)), l=l, global_hints=feeds["global_hints"])
        for name in ("hint_ab", "hint_mask", "hint_prop"):
            run[name] = pad_to(feeds[name], rt.multiple, "constant")
        run.update(("inst_" + n, f) for n, f in zip(rt.feature_names, rt.encode(feeds["inst_l"])))
        run.update((k, feeds[k]) for k in ("inst_l", "inst_hint_ab", "inst_hint_mask"))
        run["boxes"] = feeds["boxes"] * np.array([w / float(wp), h / float(hp)] * 2, np.float32)
        ab, _ = rt.session.run(list(FUSED_OUTPUTS), run)
        return ab[0, :, :h, :w].transpose(1, 2, 0)


def pairing_problem(full_metadata, fused_metadata):
    """Why a fused model does not belong with the full model (None when it does, or when unknown).

    The fused graph carries its own copy of the full network; exported from another full
    checkpoint, photos with objects and photos without would come from two different networks."""
    fused_step = str(fused_metadata.get("full_train_step", ""))
    full_step = str(full_metadata.get("train_step", ""))
    if fused_step and full_step and fused_step != full_step:
        return ("the instance-aware model was built on the full network at step %s, but the full model is "
                "at step %s: export both from the same checkpoint" % (fused_step, full_step))
    return None


def warn_fallback(message):
    warnings.warn(message)
    return message
