"""What the detector knows, lent to the colorization network.

A colorizer must recognize what it looks at (a face, a bus, a banana) to pick its colors.
Zhang et al. learned that from 1.3 M ImageNet photos; Tinct trains on 1558. NanoDet, the
offline detector Tinct already ships for instance-aware colorization, learned from all of
COCO what objects look like. Its feature pyramid (PAN outputs at strides 8 and 32, exposed
by tools/detector/expose_features.py) is computed once per photo on the gray photo,
letterboxed as for detection, and sampled bilinearly at the centers of the colorization
network's 1/8-resolution cells, where it joins the bottleneck (engine/models/colornet.py).
The same sampling serves training crops (scaled, cropped, flipped) and whole photos.
"""

from dataclasses import dataclass

import numpy as np

from . import TinctError
from .detect import INPUT_SIZE, letterbox, normalize

FEATURE_OUTPUTS = {8: "semantic_s8", 32: "semantic_s32"}  # stride -> detector output
SEMANTIC_DIM = 256  # 128 channels per stride
CELL = 8  # the colorization network's bottleneck cell, in its input pixels
STRIDES = tuple(sorted(FEATURE_OUTPUTS))  # the order of their channels in sample()'s output


def stride_channels(stride):
    """The channels of one stride's features in sample()'s output, as a slice."""
    per = SEMANTIC_DIM // len(STRIDES)
    i = STRIDES.index(stride)
    return slice(i * per, (i + 1) * per)


@dataclass
class FeatureMaps:
    """A photo's detector features and where the photo sits in the detector's input."""

    maps: dict  # stride -> (C, S, S) array
    scale: float  # photo pixel x lands at x * scale + offset_x in the detector's input
    offset: tuple  # (offset_x, offset_y)

    def compact(self):
        """The same features in float16 (half the memory; training keeps one per corpus photo)."""
        return FeatureMaps({s: m.astype(np.float16) for s, m in self.maps.items()}, self.scale, self.offset)


def feature_maps(detector, photo):
    """Photo (any size, gray or color; seen as gray) -> FeatureMaps."""
    tensor, scale, offset = letterbox(photo, INPUT_SIZE, gray=True)
    outs = detector.outputs(normalize(tensor))
    missing = [n for n in FEATURE_OUTPUTS.values() if n not in outs]
    if missing:
        raise TinctError("detector file %s has no feature outputs %s; run tools/detector/expose_features.py"
                         % (detector.path, missing))
    return FeatureMaps({s: outs[n][0] for s, n in FEATURE_OUTPUTS.items()}, scale, offset)


def _bilinear_1d(coords, size):
    """Continuous cell coordinates -> (lower index, upper index, upper weight), clamped at the border."""
    c = np.clip(coords, 0.0, size - 1.0)
    lo = np.floor(c).astype(np.int64)
    hi = np.minimum(lo + 1, size - 1)
    return lo, hi, (c - lo).astype(np.float32)


def sample(features, ys, xs):
    """Bilinear features at photo positions ys (rows) x xs (columns), continuous pixel
    coordinates (pixel i covers [i, i + 1)) -> (SEMANTIC_DIM, len(ys), len(xs)) float32."""
    out = []
    ox, oy = features.offset
    for stride in STRIDES:
        fmap = features.maps[stride]
        size = fmap.shape[-1]
        y0, y1, wy = _bilinear_1d((np.asarray(ys) * features.scale + oy) / stride - 0.5, size)
        x0, x1, wx = _bilinear_1d((np.asarray(xs) * features.scale + ox) / stride - 0.5, size)
        rows = fmap[:, y0].astype(np.float32) * (1 - wy)[None, :, None] + fmap[:, y1].astype(np.float32) * wy[None, :, None]
        out.append(rows[:, :, x0] * (1 - wx) + rows[:, :, x1] * wx)
    return np.concatenate(out, 0)


def cell_centers(cells, photo_len, work_len, start=0.0):
    """Photo coordinates of the centers of `cells` bottleneck cells of a working grid of
    `work_len` pixels laid over `photo_len` photo pixels (from working pixel `start`)."""
    return (start + CELL * (np.arange(cells) + 0.5)) * (photo_len / float(work_len))


def on_grid(features, photo_shape, work_shape):
    """A whole photo's features on the network's bottleneck grid for a working size (h, w)
    (multiples of 8) -> (1, SEMANTIC_DIM, h / 8, w / 8) float32."""
    (ph, pw), (h, w) = photo_shape[:2], work_shape
    grid = sample(features, cell_centers(h // CELL, ph, h), cell_centers(w // CELL, pw, w))
    return grid[None]
