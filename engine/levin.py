"""Levin, Lischinski and Weiss 2004, "Colorization using Optimization".

Neighbouring pixels with similar lightness should get similar colors: each
unhinted pixel's ab is the weighted mean of its 3x3 neighbours', weights falling
off with the lightness difference relative to the local variance; hint pixels are
fixed. That is one sparse linear system per channel, solved directly (one
factorization serves both channels). Used as the evaluation baseline and as the
model-free `--method levin`, and, at half the network's resolution, as the
network's own view of how the user's hints spread (`propagate_hints`).
"""

import threading
from collections import OrderedDict

import numpy as np

from . import TinctError

_MIN_SIGMA2 = 2e-6


def _require_scipy():
    try:
        import scipy.sparse  # noqa: F401
        import scipy.sparse.linalg  # noqa: F401
    except ImportError:
        raise TinctError("the Levin method needs scipy: pip install scipy")
    import scipy.sparse as sp
    import scipy.sparse.linalg as spla

    return sp, spla


def _neighbour_entries(l):
    """Levin's weights for lightness l (H, W) in 0..100 as (rows, cols, -weight) over every pixel's
    in-image 3x3 neighbours. They depend on L alone: a photo's hint edits reuse them (_Photo)."""
    h, w = l.shape
    y = (l / 100.0).astype(np.float64)
    pad = np.pad(y, 1, mode="edge")
    valid_pad = np.pad(np.ones((h, w), bool), 1)
    offsets = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)]
    neigh = np.stack([pad[1 + dy:1 + dy + h, 1 + dx:1 + dx + w] for dy, dx in offsets])
    valid = np.stack([valid_pad[1 + dy:1 + dy + h, 1 + dx:1 + dx + w] for dy, dx in offsets])
    # local variance over the window (centre included), only over pixels inside the image
    window = np.concatenate([neigh, y[None]], 0)
    wvalid = np.concatenate([valid, np.ones((1, h, w), bool)], 0)
    count = wvalid.sum(0)
    mean = (window * wvalid).sum(0) / count
    var = (((window - mean) ** 2) * wvalid).sum(0) / count
    sqdiff = np.where(valid, (neigh - y[None]) ** 2, np.inf)
    sigma2 = np.maximum(0.6 * var, sqdiff.min(0) / np.log(100.0))
    sigma2 = np.maximum(sigma2, _MIN_SIGMA2)
    wts = np.where(valid, np.exp(-sqdiff / sigma2[None]), 0.0)
    wts /= np.maximum(wts.sum(0, keepdims=True), 1e-12)
    idx = np.arange(h * w).reshape(h, w)
    rows = [idx[valid[k]] for k in range(len(offsets))]
    cols = [r + dy * w + dx for r, (dy, dx) in zip(rows, offsets)]
    vals = [-wts[k][valid[k]] for k in range(len(offsets))]
    return np.concatenate(rows), np.concatenate(cols), np.concatenate(vals)


def _assemble(entries, free, diag):
    """Levin's matrix: `diag` on the diagonal, the neighbour weights on the free (unhinted) rows."""
    sp, _ = _require_scipy()
    rows, cols, vals = entries
    keep = free[rows]
    n = free.size
    return sp.csc_matrix((np.concatenate([diag, vals[keep]]),
                          (np.concatenate([np.arange(n), rows[keep]]), np.concatenate([np.arange(n), cols[keep]]))),
                         shape=(n, n))


def affinity_system(l, hint_mask):
    """The sparse matrix of Levin's constraints for lightness l (H, W) in 0..100."""
    return _assemble(_neighbour_entries(l), ~np.asarray(hint_mask, bool).ravel(), np.ones(l.size))


def levin_colorize(l, hint_ab, hint_mask):
    """l (H, W) 0..100, hint_ab (H, W, 2), hint_mask (H, W) -> ab float32 (H, W, 2)."""
    l = np.asarray(l, np.float32)
    hint_ab = np.asarray(hint_ab, np.float32)
    hint_mask = np.asarray(hint_mask).astype(bool)
    if l.ndim != 2 or hint_ab.shape != l.shape + (2,) or hint_mask.shape != l.shape:
        raise TinctError("Levin needs L (H, W), hints (H, W, 2) and a mask (H, W); got %s, %s, %s"
                         % (l.shape, hint_ab.shape, hint_mask.shape))
    if not hint_mask.any():
        return np.zeros(l.shape + (2,), np.float32)
    return _solve_ab(affinity_system(l, hint_mask), hint_ab, hint_mask)


def _solve_ab(system, hint_ab, hint_mask):
    """Both ab channels from one factorization of Levin's system."""
    _, spla = _require_scipy()
    rhs = np.where(hint_mask[..., None], hint_ab, 0.0).reshape(-1, 2).astype(np.float64)
    ab = spla.splu(system.tocsc(), permc_spec="COLAMD").solve(rhs)
    return ab.reshape(hint_mask.shape + (2,)).astype(np.float32)


REACH_LEAK = 1e-3  # per coarse cell: a hint's reach fades over some 30 cells of flat lightness
_MAX_CHANGED = 40  # hint cells changed since the last factorization past which refactorizing is cheaper
_CHUNK = 4  # right-hand sides per SuperLU solve: past about 5 at once it slows down sharply (measured)
_FACTOR_OPTIONS = dict(permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.0, options=dict(SymmetricMode=True))
# ^ the rows are diagonally dominant, so no pivoting is needed, and the symmetric pattern's ordering
#   leaves a third fewer factor entries than COLAMD: faster to factorize and to solve


class _Photo:
    """Levin's systems on one coarse L, kept between hint edits of the same photo.

    The neighbour weights depend on L alone; a hint only turns its cells' rows into identity rows.
    So the two factorizations (ab, and the leaky reach) made for one hint set serve the next as well:
    the r cells whose hint status changed are a rank-r change of each matrix (Woodbury), costing r
    extra solves instead of two factorizations, and a changed color costs nothing but the solves.
    """

    def __init__(self, lc):
        sp, _ = _require_scipy()
        self.entries = _neighbour_entries(lc)
        rows, cols, vals = self.entries
        self.neighbours = sp.csr_matrix((vals, (rows, cols)), shape=(lc.size, lc.size))
        self.lock = threading.Lock()
        self.hinted = None  # the hint cells the factorizations are for
        self.lus = None  # (ab system, reach system)

    def solve(self, ab, hinted):
        """Coarse ab (n, 2) and reach (n,) for hint cells `hinted` (n,) with colors ab (n, 2)."""
        rhs = (np.where(hinted[:, None], ab, 0.0), hinted[:, None].astype(np.float64))
        with self.lock:
            if self.hinted is None or np.count_nonzero(hinted != self.hinted) > _MAX_CHANGED:
                self._factorize(hinted)
            out = self._solve(hinted, rhs)
            if out is None:  # the update lost accuracy (a near-singular change): start afresh
                self._factorize(hinted)
                out = self._solve(hinted, rhs)  # no change left to update: a plain solve
        return out[0], np.clip(out[1][:, 0], 0.0, 1.0)

    def nbytes(self):
        """Memory held, about: the factorizations dominate (a value and an index per entry)."""
        lus = self.lus
        return 12 * (self.neighbours.nnz + (sum(lu.nnz for lu in lus) if lus else 0))

    def _factorize(self, hinted):
        _, spla = _require_scipy()
        free = ~hinted
        self.lus = tuple(spla.splu(_assemble(self.entries, free, 1.0 + leak * free), **_FACTOR_OPTIONS)
                         for leak in (0.0, REACH_LEAK))
        self.hinted = hinted.copy()

    def _solve(self, hinted, rhs):
        """Both systems for `hinted` from the factorizations for self.hinted; None when an update
        is inaccurate (its residual checked: the capacitance matrix can be ill-conditioned)."""
        sp, _ = _require_scipy()
        n = hinted.size
        changed = np.flatnonzero(hinted != self.hinted)
        r = changed.size
        unit = sp.csr_matrix((np.ones(r), (np.arange(r), changed)), shape=(r, n))
        sign = sp.diags(np.where(hinted[changed], -1.0, 1.0))  # a free row minus a hinted row, or back
        free = ~hinted
        out = []
        for lu, b, leak in zip(self.lus, rhs, (0.0, REACH_LEAK)):
            y = _lu_solve(lu, np.hstack([b, unit.T.toarray()]))
            x = y[:, :b.shape[1]]
            if r:
                z = y[:, b.shape[1]:]
                d = sign @ (self.neighbours[changed] + leak * unit)  # new rows minus factorized rows
                try:
                    x = x - z @ np.linalg.solve(np.eye(r) + d @ z, d @ x)
                except np.linalg.LinAlgError:
                    return None
                residual = x + free[:, None] * (leak * x + self.neighbours @ x) - b
                if np.abs(residual).max() > 1e-9 * max(1.0, np.abs(b).max()):
                    return None
            out.append(x)
        return out


def _lu_solve(lu, b):
    """lu's solve for the columns of b, _CHUNK at a time."""
    return np.concatenate([lu.solve(np.asfortranarray(b[:, i:i + _CHUNK])) for i in range(0, b.shape[1], _CHUNK)], 1)


_CACHE_SIZE = 3  # photos kept, fewer when their factorizations pass _CACHE_BYTES (always the latest)
_CACHE_BYTES = 192 << 20  # about 26 MB a photo at a 256x256 working grid, 70 MB at 320x480
_cache = OrderedDict()
_cache_lock = threading.Lock()


def _photo(lc):
    """The _Photo for coarse L `lc`, made the most recently used."""
    key = (lc.shape, lc.tobytes())
    with _cache_lock:
        photo = _cache.get(key)
        if photo is not None:
            _cache.move_to_end(key)
            return photo
    photo = _Photo(lc)  # outside the lock: other photos' calls go on meanwhile
    with _cache_lock:
        photo = _cache.setdefault(key, photo)
        _cache.move_to_end(key)
    return photo


def _trim_cache():
    """Evict least recently used photos past _CACHE_SIZE or _CACHE_BYTES."""
    with _cache_lock:
        while len(_cache) > _CACHE_SIZE or (len(_cache) > 1
                                            and sum(p.nbytes() for p in _cache.values()) > _CACHE_BYTES):
            _cache.popitem(last=False)


def clear_cache():
    """Forget every photo's systems (tests; freeing memory)."""
    with _cache_lock:
        _cache.clear()


PROP_MAX_SIDE = 160  # the propagation grid's short side at most: a bounded solve at any --size


def propagate_hints(l, hint_ab, hint_mask):
    """The hints as the network takes them (`hint_prop`, (H, W, 3)): Levin's spread of their
    ab over the whole grid, and their reach (below), solved on a coarser grid: half the
    network's (as in training), or coarser still past PROP_MAX_SIDE cells, so a large
    --size keeps the solve to a few tenths of a second.

    A dot's color then already follows the photo's edges, and the network learns where to
    trust it and where its own sense of objects knows better. Solving at half resolution
    costs a sixth of the time and measured no worse (Levin at 10 hints on 20 val crops:
    24.97 dB vs 24.93 dB at full resolution). Zeros when there is no hint.

    The reach is how strongly each pixel is tied to some hint through similar lightness, 1 on
    hints, in [0, 1]: Levin's system for an indicator that leaks a little (REACH_LEAK) at every
    unhinted pixel, so it stays high across a region a dot sits in and drops at the edge around
    it, where plain propagation would carry the dot's color on for lack of any other constraint.

    Repeated calls on the same L (a user adding a dot and re-running) reuse that photo's
    factorizations (`_Photo`), a few photos kept.
    """
    l = np.asarray(l, np.float32)
    mask = np.asarray(hint_mask) > 0
    h, w = l.shape
    if not mask.any():
        return np.zeros((h, w, 3), np.float32)
    factor = max(2, -(-min(h, w) // PROP_MAX_SIDE))
    ph, pw = -h % factor, -w % factor  # pad to whole cells, so no edge row's hint is lost
    lp = np.pad(l, ((0, ph), (0, pw)), mode="edge")
    mp = np.pad(mask, ((0, ph), (0, pw))).astype(np.float32)
    abp = np.pad(np.asarray(hint_ab, np.float32), ((0, ph), (0, pw), (0, 0))) * mp[..., None]
    lc = _cells(lp, factor).mean((1, 3))
    m = _cells(mp, factor).sum((1, 3))
    ab = _cells(abp, factor).sum((1, 3)) / np.maximum(m, 1.0)[..., None]
    hinted = (m > 0).ravel()
    ab, reach = _photo(lc).solve(ab.reshape(-1, 2).astype(np.float64), hinted)
    _trim_cache()
    coarse = np.concatenate([ab, reach[:, None]], -1).reshape(lc.shape + (3,)).astype(np.float32)
    return _bilinear(coarse, h + ph, w + pw)[:h, :w]


def _cells(x, f):
    """(H, W, ...) -> (H/f, f, W/f, f, ...) blocks for pooling."""
    return x.reshape((x.shape[0] // f, f, x.shape[1] // f, f) + x.shape[2:])


def _bilinear(x, h, w):
    """Resize (hc, wc, C) to (h, w, C), sampling at pixel centres (as PIL and torch do)."""
    from PIL import Image

    return np.stack([np.asarray(Image.fromarray(np.ascontiguousarray(x[..., c])).resize((w, h), Image.BILINEAR))
                     for c in range(x.shape[-1])], -1).astype(np.float32)
