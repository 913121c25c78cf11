"""Turn user hints into network inputs.

Local hints are painted pixels (an RGBA image the photo's size; alpha > 0 marks a
hint). They are pooled onto the working grid so that even a 1-pixel dot survives
the downscale: a cell is a hint if any of its pixels is, and its color is the mean
of its hint pixels.

Global hints summarize a reference photo's palette (Comicolorization): a 313-bin
soft ab histogram plus the mean HSV saturation, each with an "on" flag.
"""

import numpy as np

from .color import rgb_to_lab
from .gamut import NUM_BINS, soft_encode

GLOBAL_DIM = NUM_BINS + 3  # histogram, histogram-on, saturation, saturation-on
HIST_SIDE = 64  # the reference is reduced to about this short side first


def encode_local_hints(hint_rgba, out_h, out_w):
    """RGBA hint image (H, W, 4) -> (ab (out_h, out_w, 2) float32, mask (out_h, out_w) float32)."""
    hint_rgba = np.asarray(hint_rgba)
    if hint_rgba.ndim != 3 or hint_rgba.shape[2] != 4:
        raise ValueError("hint image must be RGBA (H, W, 4), got shape %s" % (hint_rgba.shape,))
    H, W = hint_rgba.shape[:2]
    ys, xs = np.nonzero(hint_rgba[..., 3] > 0)
    ab = np.zeros((out_h, out_w, 2), np.float32)
    mask = np.zeros((out_h, out_w), np.float32)
    if len(ys) == 0:
        return ab, mask
    colors = hint_rgba[ys, xs, :3]
    if colors.dtype not in (np.uint8, np.uint16):
        colors = np.clip(colors.astype(np.float32), 0.0, 1.0)
    hint_ab = rgb_to_lab(colors)[:, 1:]
    cy = (ys.astype(np.int64) * out_h) // H
    cx = (xs.astype(np.int64) * out_w) // W
    cell = cy * out_w + cx
    counts = np.bincount(cell, minlength=out_h * out_w).astype(np.float32)
    sums = np.stack([np.bincount(cell, weights=hint_ab[:, k], minlength=out_h * out_w) for k in range(2)], -1)
    hit = counts > 0
    flat_ab = ab.reshape(-1, 2)
    flat_ab[hit] = sums[hit] / counts[hit, None]
    mask.reshape(-1)[hit] = 1.0
    return grow_tiny_dots(ab, mask)


TINY_DOT_CELLS = 4  # a dot of at most this many cells (within 5x5) counts as a click, not a patch


def box_sum(a, radius):
    """Sum of `a` over the (2r+1)^2 window around each cell (zero outside), same shape."""
    k = 2 * radius + 1
    p = np.pad(a, [(radius + 1, radius)] * 2 + [(0, 0)] * (a.ndim - 2))
    c = p.cumsum(0).cumsum(1)
    return c[k:, k:] - c[:-k, k:] - c[k:, :-k] + c[:-k, :-k]


def grow_tiny_dots(ab, mask):
    """Give each isolated dot of one or two cells the 3x3-cell footprint of a small brush.

    A one-pixel pencil dot on a large photo is a single cell of the working grid, smaller than
    most hints the network saw in training, so it pulls weakly; as a 3x3-cell patch it pulls
    like the small patches users click in Zhang et al.'s interface. Larger painted patches,
    and cells already hinted, are left exactly as they are."""
    hinted = mask > 0
    seeds = hinted & (box_sum(mask, 2) <= TINY_DOT_CELLS)
    if not seeds.any():
        return ab, mask
    weight = box_sum(seeds.astype(np.float32), 1)
    spread = box_sum(ab * seeds[..., None], 1)
    grow = (weight > 0) & ~hinted
    ab = ab.copy()
    ab[grow] = spread[grow] / weight[grow, None]
    return ab, np.where(grow, 1.0, mask).astype(np.float32)


def has_hints(hint_rgba):
    return hint_rgba is not None and bool((np.asarray(hint_rgba)[..., 3] > 0).any())


def _unit_scale(dtype):
    """The value of full intensity for this pixel type (8-bit, 16-bit, float in [0, 1])."""
    return 255.0 if dtype == np.uint8 else (65535.0 if dtype == np.uint16 else 1.0)


def _reduce(rgb, side):
    """Box-reduce an RGB array so its short side is about `side` (integer stride)."""
    h, w = rgb.shape[:2]
    step = max(1, min(h, w) // side)
    if step == 1:
        return rgb
    hh, ww = (h // step) * step, (w // step) * step
    r = rgb[:hh, :ww].astype(np.float32).reshape(hh // step, step, ww // step, step, -1).mean((1, 3))
    return r / _unit_scale(rgb.dtype)


def ab_histogram(rgb):
    """313-bin soft ab histogram of an sRGB image, computed at reduced resolution."""
    small = _reduce(np.asarray(rgb), HIST_SIDE)
    ab = rgb_to_lab(small)[..., 1:].reshape(-1, 2)
    return soft_encode(ab).mean(0)


def mean_saturation(rgb):
    """Mean HSV saturation in [0, 1]."""
    small = _reduce(np.asarray(rgb), HIST_SIDE)
    small = small.astype(np.float32) / _unit_scale(small.dtype)
    mx = small.max(-1)
    mn = small.min(-1)
    sat = np.where(mx > 1e-6, (mx - mn) / np.maximum(mx, 1e-6), 0.0)
    return float(sat.mean())


def global_hint_vector(reference_rgb=None, use_histogram=True, use_saturation=True):
    """The network's global-hint input (GLOBAL_DIM,), all-off when there is no reference."""
    vec = np.zeros(GLOBAL_DIM, np.float32)
    if reference_rgb is None:
        return vec
    if use_histogram:
        vec[:NUM_BINS] = ab_histogram(reference_rgb)
        vec[NUM_BINS] = 1.0
    if use_saturation:
        vec[NUM_BINS + 1] = mean_saturation(reference_rgb)
        vec[NUM_BINS + 2] = 1.0
    return vec


COMPOSE_STRIP_ROWS = 512


def compose_hint_layers(layers, height, width):
    """Merge hint layers into one (height, width, 4) RGBA image, as GIMP stacks them.

    layers: (rgba ndarray (h, w, 4), offset_x, offset_y, opacity 0..1) in stacking
    order, bottom first; uint8, uint16 or float [0, 1]. Layers may be any size and
    lie partly outside the photo. Alpha is composited with "over"; colors stay
    unpremultiplied, so a soft-edged dot keeps its painted color. Any pixel a layer
    touches keeps alpha > 0 (it stays a hint) however faint. The result is uint8
    when every layer is uint8, else uint16. One full-size opaque-opacity layer at
    (0, 0) is returned as it is.
    """
    layers = [(np.asarray(rgba), int(x), int(y), float(opacity)) for rgba, x, y, opacity in layers]
    for i, (rgba, _, _, _) in enumerate(layers, 1):
        if rgba.ndim != 3 or rgba.shape[2] != 4:
            raise ValueError("hint layer %d must be RGBA (h, w, 4), got shape %s" % (i, rgba.shape))
    out_dtype = np.uint8 if all(rgba.dtype == np.uint8 for rgba, _, _, _ in layers) else np.uint16
    if len(layers) == 1:
        rgba, x, y, opacity = layers[0]
        if (x, y) == (0, 0) and rgba.shape[:2] == (height, width) and opacity >= 1.0 and rgba.dtype == out_dtype:
            return rgba
    out = np.zeros((height, width, 4), out_dtype)
    top = _unit_scale(out_dtype)
    for rgba, x, y, opacity in layers:
        h, w = rgba.shape[:2]
        y0, y1, x0, x1 = max(0, y), min(height, y + h), max(0, x), min(width, x + w)
        if y1 <= y0 or x1 <= x0 or opacity <= 0:
            continue
        scale = _unit_scale(rgba.dtype)
        for s0 in range(y0, y1, COMPOSE_STRIP_ROWS):
            s1 = min(y1, s0 + COMPOSE_STRIP_ROWS)
            src = rgba[s0 - y:s1 - y, x0 - x:x1 - x]
            alpha = np.clip(src[..., 3:4].astype(np.float32) / scale, 0.0, 1.0) * opacity
            touched = alpha[..., 0] > 0
            if not touched.any():
                continue
            color = np.clip(src[..., :3].astype(np.float32) / scale, 0.0, 1.0)
            dst = out[s0:s1, x0:x1].astype(np.float32) / top
            under = dst[..., 3:4] * (1.0 - alpha)
            new_alpha = alpha + under
            mixed = (color * alpha + dst[..., :3] * under) / np.maximum(new_alpha, 1e-12)
            block = np.empty(dst.shape, out_dtype)
            block[..., :3] = np.round(np.clip(mixed, 0.0, 1.0) * top)
            a = np.round(new_alpha[..., 0] * top)
            block[..., 3] = np.where(touched, np.maximum(a, 1.0), a)
            region = out[s0:s1, x0:x1]
            region[touched] = block[touched]
    return out
