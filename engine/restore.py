"""Fill painted damage (scratches, specks, tears, folds) in a photo's lightness before it is
colorized: the partial-convolution network of engine/models/pconv.py on onnxruntime.

Damage is usually a small part of a photo, so the network runs only on the tiles that
hold some (with context around them), at full resolution: a 1-pixel scratch stays a
1-pixel repair, and a 100 MP scan costs what its damage costs. Intact pixels are never
changed. The result is a copy of the photo in its own format (gray, RGB or RGBA; 8/16-bit
or float) whose damaged pixels hold the restored lightness as neutral gray; the colorizer
then replaces their chroma like everywhere else.

`harmonic_fill` (each hole pixel the mean of its neighbours: Laplace's equation with the
intact pixels as boundary) is the classical fill: the network starts from it and adds what
it misses, and `tinct eval-restore` compares the two.
"""

import os

import numpy as np

from . import TinctError
from .color import l_to_gray
from .runtime import WEIGHTS_DIR
from .task_model import TaskModel, pad_to

DEFAULT_RESTORE_MODEL = os.path.join(WEIGHTS_DIR, "tinct-restore.onnx")
TILE = 512  # window the network sees
MARGIN = 64  # context kept around each tile's core, which is what gets written
HOLD = 1e-6  # harmonic_fill's pull toward the intact mean, against holes with no boundary
RESTORE_SHARE = 0.2  # of a request's progress, when its damage is restored before colorizing


def split_progress(progress, share=RESTORE_SHARE):
    """Split a progress(fraction, message) callback in two: the first `share` of it (restoring),
    then the rest (colorizing)."""
    if progress is None:
        return None, None
    return (lambda f, m: progress(share * f, m)), (lambda f, m: progress(share + (1 - share) * f, m))


def damage_from_image(image, name="the damage mask"):
    """A painted mask image -> bool (H, W), True = damaged.

    RGBA or gray+alpha: painted (alpha > 0) pixels, like a GIMP layer painted on transparency;
    gray or RGB without alpha: light pixels (white paint on black)."""
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[2] in (2, 4):
        return arr[..., -1] > 0
    if arr.ndim == 3:
        arr = arr[..., :3].max(axis=2)
    if arr.ndim != 2:
        raise TinctError("%s: a damage mask must be a gray, RGB or RGBA image, got shape %s" % (name, arr.shape))
    top = 65535 if arr.dtype == np.uint16 else (1.0 if arr.dtype.kind == "f" else 255)
    return arr > top / 2


def check_damage(damage, height, width, name="the damage mask"):
    damage = np.asarray(damage)
    if damage.shape[:2] != (height, width):
        raise TinctError("%s is %dx%d but the photo is %dx%d" % (name, damage.shape[1], damage.shape[0], width, height))
    return damage.astype(bool)


def l_to_pixels(l, like):
    """Lightness (n, m) -> neutral gray pixels in the dtype and channels of `like` (a photo row block)."""
    gray = l_to_gray(l)
    if like.dtype == np.uint8:
        gray = np.round(gray * 255).astype(np.uint8)
    elif like.dtype == np.uint16:
        gray = np.round(gray * 65535).astype(np.uint16)
    else:
        gray = gray.astype(like.dtype)
    if like.ndim == 2:
        return gray
    out = np.repeat(gray[..., None], like.shape[2], axis=2)
    if like.shape[2] == 4:
        out[..., 3] = like[..., 3]
    return out


def damaged_tiles(damage, tile=TILE, margin=MARGIN):
    """(y0, y1, x0, x1) cores of size tile - 2 * margin that hold any damage."""
    core = tile - 2 * margin
    h, w = damage.shape
    for y0 in range(0, h, core):
        for x0 in range(0, w, core):
            y1, x1 = min(h, y0 + core), min(w, x0 + core)
            if damage[y0:y1, x0:x1].any():
                yield y0, y1, x0, x1


class Restorer(TaskModel):
    """Loads the restoration network once; restores any number of photos."""

    ENV, DEFAULT, TASK = "TINCT_RESTORE_MODEL", DEFAULT_RESTORE_MODEL, "restore"
    NAME, OPTION = "restoration model", "--restore-model"

    def fill(self, l, intact):
        """The network on one window: l (h, w) 0..100, intact (h, w) bool -> restored L (h, w)."""
        multiple = int(self.runtime.metadata.get("size_multiple", 32))
        h, w = l.shape
        lp = pad_to(l.astype(np.float32), multiple)
        mp = pad_to(intact.astype(np.float32), multiple)
        base = harmonic_fill(lp, mp < 0.5)
        out = self.runtime.session.run(["restored"], {"l": lp[None, None], "mask": mp[None, None],
                                                      "base": base[None, None]})[0][0, 0, :h, :w]
        return np.where(intact, l, np.clip(out, 0.0, 100.0)).astype(np.float32)

    def restore(self, photo, damage, progress=None):
        """photo (any supported format), damage bool (H, W) -> (restored copy of the photo, damaged pixel count).

        Only the damaged pixels change. progress(fraction, message) is called per tile."""
        from .pipeline import photo_l_rows, validate_photo

        photo = validate_photo(photo)
        H, W = photo.shape[:2]
        damage = check_damage(damage, H, W)
        count = int(damage.sum())
        if not count:
            return photo, 0
        tiles = list(damaged_tiles(damage))
        out = photo.copy()
        band, band_rows = None, None
        for i, (y0, y1, x0, x1) in enumerate(tiles):
            wy0, wy1 = max(0, y0 - MARGIN), min(H, y1 + MARGIN)
            wx0, wx1 = max(0, x0 - MARGIN), min(W, x1 + MARGIN)
            if band_rows != (wy0, wy1):  # tiles come row band by row band: L of the band once
                band, band_rows = photo_l_rows(out, wy0, wy1), (wy0, wy1)
            window = band[:, wx0:wx1]
            filled = self.fill(window, ~damage[wy0:wy1, wx0:wx1])
            core = (slice(y0 - wy0, y1 - wy0), slice(x0 - wx0, x1 - wx0))
            hole = damage[y0:y1, x0:x1]
            block = out[y0:y1, x0:x1]
            block[hole] = l_to_pixels(filled[core], block)[hole]
            band[core[0], x0:x1] = np.where(hole, filled[core], band[core[0], x0:x1])  # the next tile's context
            if progress:
                progress((i + 1) / float(len(tiles)), "Restoring damage")
        return out, count


def harmonic_fill(l, damage):
    """Baseline: hole pixels solve Laplace's equation with the intact pixels as boundary values."""
    import scipy.sparse as sp
    import scipy.sparse.linalg as spla

    l = np.asarray(l, np.float64)
    damage = np.asarray(damage, bool)
    h, w = l.shape
    idx = -np.ones((h, w), np.int64)
    ys, xs = np.nonzero(damage)
    n = len(ys)
    if not n:
        return l.astype(np.float32)
    idx[ys, xs] = np.arange(n)
    rows, cols, vals = [], [], []
    rhs = np.zeros(n)
    deg = np.zeros(n)
    for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1)):
        ny, nx = ys + dy, xs + dx
        ok = (ny >= 0) & (ny < h) & (nx >= 0) & (nx < w)
        deg += ok
        k = np.nonzero(ok)[0]
        nb = idx[ny[k], nx[k]]
        inner = nb >= 0
        rows.append(k[inner])
        cols.append(nb[inner])
        vals.append(-np.ones(inner.sum()))
        rhs[k[~inner]] += l[ny[k[~inner]], nx[k[~inner]]]
    # a faint pull toward the intact pixels' mean keeps a hole with no intact neighbour at all
    # (a window painted over entirely) solvable; next to intact pixels it changes nothing visible
    rhs += HOLD * (l[~damage].mean() if n < l.size else 50.0)
    a = sp.csr_matrix((np.concatenate(vals + [deg + HOLD]), (np.concatenate(rows + [np.arange(n)]),
                                                              np.concatenate(cols + [np.arange(n)]))), shape=(n, n))
    out = l.copy()
    out[ys, xs] = spla.spsolve(a.tocsc(), rhs)
    return out.astype(np.float32)
