"""The 313 quantized ab bins shared by the global-hint histogram and the
color-distribution head.

Zhang et al. quantize ab on a 10-unit grid and keep the 313 cells near the
sRGB gamut. We rebuild such a set ourselves: the grid cells whose centers lie
closest to the sRGB gamut's ab footprint (all in-gamut cells first, then the
nearest ring), so the set is reproducible from first principles.
"""

import os

import numpy as np

from .color import rgb_to_lab

NUM_BINS = 313
GRID = 10.0
_BINS_FILE = os.path.join(os.path.dirname(__file__), "data", "ab_bins.npy")
_cache = {}


def compute_ab_bins(samples=96):
    """Rebuild the bin centers from the sRGB cube (slow-ish; the result is shipped)."""
    g = np.linspace(0.0, 1.0, samples, dtype=np.float32)
    cube = np.stack(np.meshgrid(g, g, g, indexing="ij"), -1).reshape(-1, 3)
    ab = rgb_to_lab(cube)[:, 1:].astype(np.float64)
    cells = np.unique(np.round(ab / GRID).astype(np.int64), axis=0)
    span = np.arange(-13, 14)
    grid = np.stack(np.meshgrid(span, span, indexing="ij"), -1).reshape(-1, 2)
    # distance from each grid center to the nearest gamut sample, in ab units
    gamut_pts = np.unique(np.round(ab, 0), axis=0)
    centers = grid * GRID
    dist = np.full(len(centers), np.inf)
    for start in range(0, len(gamut_pts), 4096):
        chunk = gamut_pts[start:start + 4096]
        d = np.sqrt(((centers[:, None, :] - chunk[None, :, :]) ** 2).sum(-1)).min(1)
        dist = np.minimum(dist, d)
    in_gamut = np.zeros(len(grid), bool)
    cell_set = set(map(tuple, cells))
    for i, c in enumerate(map(tuple, grid)):
        in_gamut[i] = c in cell_set
    order = np.lexsort((grid[:, 1], grid[:, 0], dist, ~in_gamut))
    chosen = np.sort(order[:NUM_BINS])
    return (grid[chosen] * GRID).astype(np.float32)


def ab_bins():
    """(313, 2) float32 bin centers in ab units."""
    if "bins" not in _cache:
        _cache["bins"] = np.load(_BINS_FILE)
    return _cache["bins"]


def soft_encode(ab, sigma=5.0, neighbors=5):
    """ab (N, 2) -> (N, 313) soft assignment to the nearest bins (Gaussian weights)."""
    bins = ab_bins()
    ab = np.asarray(ab, np.float32).reshape(-1, 2)
    d2 = (ab * ab).sum(1)[:, None] + (bins * bins).sum(1)[None, :] - 2.0 * ab @ bins.T
    idx = np.argpartition(d2, neighbors, axis=1)[:, :neighbors]
    near = np.take_along_axis(d2, idx, axis=1)
    w = np.exp(-near / (2 * sigma * sigma))
    w /= w.sum(1, keepdims=True)
    out = np.zeros((len(ab), NUM_BINS), np.float32)
    np.put_along_axis(out, idx, w.astype(np.float32), axis=1)
    return out


if __name__ == "__main__":
    os.makedirs(os.path.dirname(_BINS_FILE), exist_ok=True)
    np.save(_BINS_FILE, compute_ab_bins())
    print("wrote", _BINS_FILE)
