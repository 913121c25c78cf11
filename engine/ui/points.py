"""Color points, the window's unit of editing, and the hint images they become.

A point is a pixel of the full-resolution photo and an sRGB color. Drawn as one opaque pixel
in a transparent RGBA image it is exactly a dot painted in GIMP's `Tinct hints` layer, so the
hints PNG that Save writes is read back unchanged by `tinct colorize --hints`, and an existing
hints PNG opens as points (one per painted blob, at its center, in its mean color).
"""

import numpy as np

from .. import TinctError

MAX_POINTS = 2000


def check_points(points, width, height):
    """[(x, y, (r, g, b))] from the page's JSON list of {"x", "y", "rgb"}; ValueError naming the problem."""
    if not isinstance(points, list):
        raise ValueError("points must be a list")
    if len(points) > MAX_POINTS:
        raise ValueError("%d points; at most %d" % (len(points), MAX_POINTS))
    out = []
    for i, p in enumerate(points, 1):
        try:
            x, y = int(p["x"]), int(p["y"])
            rgb = tuple(int(v) for v in p["rgb"])
        except (KeyError, TypeError, ValueError):
            raise ValueError("point %d must be {\"x\", \"y\", \"rgb\": [r, g, b]}" % i)
        if not (0 <= x < width and 0 <= y < height):
            raise ValueError("point %d (%d, %d) lies outside the %dx%d photo" % (i, x, y, width, height))
        if len(rgb) != 3 or not all(0 <= v <= 255 for v in rgb):
            raise ValueError("point %d: rgb must be three numbers from 0 to 255" % i)
        out.append((x, y, rgb))
    return out


def hint_image(points, width, height, scale_x=1.0, scale_y=1.0):
    """RGBA uint8 (height, width, 4): one opaque pixel per point (x * scale_x, y * scale_y), later points on top."""
    img = np.zeros((height, width, 4), np.uint8)
    for x, y, rgb in points:
        px, py = min(width - 1, int(x * scale_x)), min(height - 1, int(y * scale_y))
        img[py, px] = rgb + (255,)
    return img


def points_from_hints(rgba):
    """The points of a hint image: one per connected painted blob, at its center, in its mean color."""
    from scipy import ndimage

    rgba = np.asarray(rgba)
    if rgba.ndim != 3 or rgba.shape[2] != 4:
        raise TinctError("the hint image needs transparency (RGBA)")
    if rgba.dtype != np.uint8:
        rgba = (rgba >> 8).astype(np.uint8)
    painted = rgba[..., 3] > 0
    labels, count = ndimage.label(painted, structure=np.ones((3, 3)))
    if count > MAX_POINTS:
        raise TinctError("the hint image has %d separate dots; the window handles at most %d" % (count, MAX_POINTS))
    if count == 0:
        return []
    index = np.arange(1, count + 1)
    centers = ndimage.center_of_mass(painted, labels, index)
    colors = [ndimage.mean(rgba[..., c].astype(np.float64), labels, index) for c in range(3)]
    return [(int(round(cx)), int(round(cy)), tuple(int(round(colors[c][i])) for c in range(3)))
            for i, (cy, cx) in enumerate(centers)]
