"""Edge-aware upsampling of ab, guided by the full-resolution L.

A fast guided filter (He et al. 2015): per-pixel linear models ab = A*L + B are
fitted on the working grid, their coefficient maps are upsampled bilinearly, and
applied to the full-resolution L. Colour edges therefore follow the photo's own
edges instead of the blur of a plain resize. Also here: area resampling by
averaging matrices, used to bring the photo down to the working grid in strips.
"""

import numpy as np


def area_matrix(n_out, n_in):
    """(n_out, n_in) matrix whose rows average the input cells each output cell covers."""
    m = np.zeros((n_out, n_in), np.float32)
    scale = n_in / n_out
    for i in range(n_out):
        a, b = i * scale, (i + 1) * scale
        lo, hi = int(np.floor(a)), min(n_in, int(np.ceil(b)))
        for j in range(lo, hi):
            m[i, j] = min(b, j + 1) - max(a, j)
        m[i] /= m[i].sum()
    return m


def box_mean(x, r):
    """Mean over a (2r+1)^2 window with edge-normalized borders (x is (h, w, ...))."""
    def along(a, axis):
        n = a.shape[axis]
        c = np.cumsum(a, axis=axis, dtype=np.float64)
        zero = np.zeros_like(np.take(c, [0], axis=axis))
        c = np.concatenate([zero, c], axis=axis)
        idx = np.arange(n)
        hi = np.minimum(idx + r + 1, n)
        lo = np.maximum(idx - r, 0)
        s = np.take(c, hi, axis=axis) - np.take(c, lo, axis=axis)
        shape = [1] * a.ndim
        shape[axis] = n
        return s / (hi - lo).reshape(shape)
    return along(along(x, 0), 1).astype(np.float32)


def guided_coefficients(l_low, ab_low, radius=2, eps=2e-3):
    """Fit ab ~ A*L + B locally on the working grid; returns (A, B), each (h, w, 2).

    L is scaled to [0, 1] for the fit, so eps is in those units; the returned A
    applies to L in its natural 0..100 units.
    """
    guide = (l_low / 100.0).astype(np.float32)[..., None]
    mean_i = box_mean(guide, radius)
    mean_p = box_mean(ab_low, radius)
    cov_ip = box_mean(guide * ab_low, radius) - mean_i * mean_p
    var_i = box_mean(guide * guide, radius) - mean_i * mean_i
    a = cov_ip / (var_i + eps)
    b = mean_p - a * mean_i
    a = box_mean(a, radius)
    b = box_mean(b, radius)
    return a / 100.0, b


class BilinearRows:
    """Bilinear sampling of a small map onto a large grid, one block of rows at a time."""

    def __init__(self, small_h, small_w, big_h, big_w):
        self.sy = self._axis(small_h, big_h)
        self.sx = self._axis(small_w, big_w)

    @staticmethod
    def _axis(n_small, n_big):
        pos = (np.arange(n_big) + 0.5) * n_small / n_big - 0.5
        pos = np.clip(pos, 0, n_small - 1)
        i0 = np.floor(pos).astype(np.int64)
        i1 = np.minimum(i0 + 1, n_small - 1)
        return i0, i1, (pos - i0).astype(np.float32)

    def rows(self, small, y0, y1):
        i0, i1, t = (a[y0:y1] for a in self.sy)
        tt = t.reshape(-1, *([1] * (small.ndim - 1)))
        r = small[i0] * (1 - tt) + small[i1] * tt
        j0, j1, u = self.sx
        uu = u.reshape(1, -1, *([1] * (small.ndim - 2)))
        return r[:, j0] * (1 - uu) + r[:, j1] * uu
