"""Exact sRGB <-> CIE Lab (D65, 2 degree observer) in numpy.

Integer inputs go through lookup tables so that a 12 MP photo converts in well
under a second; float inputs use the closed-form transfer curves.
"""

import numpy as np

# IEC 61966-2-1 sRGB primaries -> XYZ (D65), and its exact inverse.
RGB_TO_XYZ = np.array(
    [
        [0.4124564, 0.3575761, 0.1804375],
        [0.2126729, 0.7151522, 0.0721750],
        [0.0193339, 0.1191920, 0.9503041],
    ]
)
XYZ_TO_RGB = np.linalg.inv(RGB_TO_XYZ)
WHITE_D65 = np.array([0.95047, 1.0, 1.08883])

_EPS = 216.0 / 24389.0  # CIE epsilon
_KAPPA = 24389.0 / 27.0  # CIE kappa

_LINEAR_LUTS = {}


def srgb_to_linear(v):
    """sRGB-encoded values in [0, 1] -> linear light."""
    v = np.asarray(v, np.float32)
    return np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4).astype(np.float32)


def linear_to_srgb(v):
    """Linear light -> sRGB-encoded values (not clipped)."""
    v = np.asarray(v, np.float32)
    pos = np.maximum(v, 0.0031308)
    return np.where(v <= 0.0031308, v * 12.92, 1.055 * pos ** (1 / 2.4) - 0.055).astype(np.float32)


def _linear_lut(maxval):
    lut = _LINEAR_LUTS.get(maxval)
    if lut is None:
        lut = srgb_to_linear(np.arange(maxval + 1, dtype=np.float64) / maxval)
        _LINEAR_LUTS[maxval] = lut
    return lut


def to_linear(rgb):
    """Any sRGB array (uint8, uint16 or float in [0, 1]) -> linear float32."""
    rgb = np.asarray(rgb)
    if rgb.dtype == np.uint8:
        return _linear_lut(255)[rgb]
    if rgb.dtype == np.uint16:
        return _linear_lut(65535)[rgb]
    return srgb_to_linear(rgb)


def _f(t):
    return np.where(t > _EPS, np.cbrt(t), (_KAPPA * t + 16.0) / 116.0)


def _f_inv(f):
    f3 = f * f * f
    return np.where(f3 > _EPS, f3, (116.0 * f - 16.0) / _KAPPA)


def rgb_to_lab(rgb):
    """sRGB (..., 3) as uint8/uint16/float [0, 1] -> Lab float32 (..., 3)."""
    lin = to_linear(rgb)
    xyz = lin @ (RGB_TO_XYZ / WHITE_D65[:, None]).T.astype(np.float32)
    f = _f(xyz)
    lab = np.empty_like(f)
    lab[..., 0] = 116.0 * f[..., 1] - 16.0
    lab[..., 1] = 500.0 * (f[..., 0] - f[..., 1])
    lab[..., 2] = 200.0 * (f[..., 1] - f[..., 2])
    return lab


def gray_to_l(gray):
    """Gray values (uint8/uint16/float [0, 1]) -> L, treating gray as R=G=B."""
    y = to_linear(gray)
    return (116.0 * _f(y) - 16.0).astype(np.float32)


def l_to_gray(l):
    """L -> the neutral gray of that lightness, sRGB float in [0, 1]: the inverse of gray_to_l
    (a black-and-white photo's gray values)."""
    l = np.asarray(l, np.float32)
    zeros = np.zeros_like(l)
    return lab_to_rgb(np.stack([l, zeros, zeros], -1))[..., 0]


def rgb_to_l(rgb):
    """Only the lightness of an sRGB array; cheaper than rgb_to_lab()[..., 0]."""
    lin = to_linear(rgb)
    y = lin @ RGB_TO_XYZ[1].astype(np.float32)
    return (116.0 * _f(y) - 16.0).astype(np.float32)


def lab_to_linear(lab):
    """Lab float (..., 3) -> linear RGB float32 (unclipped)."""
    lab = np.asarray(lab, np.float32)
    fy = (lab[..., 0] + 16.0) / 116.0
    fx = fy + lab[..., 1] / 500.0
    fz = fy - lab[..., 2] / 200.0
    xyz = np.stack([_f_inv(fx), _f_inv(fy), _f_inv(fz)], axis=-1)
    return xyz @ (XYZ_TO_RGB * WHITE_D65[None, :]).T.astype(np.float32)


def lab_to_rgb(lab):
    """Lab float (..., 3) -> sRGB float32 in [0, 1] (clipped to the gamut)."""
    return np.clip(linear_to_srgb(lab_to_linear(lab)), 0.0, 1.0)


def quantize(rgb01, bits=8):
    """sRGB float [0, 1] -> uint8 or uint16 with rounding."""
    maxval = 255 if bits == 8 else 65535
    out = np.rint(np.clip(rgb01, 0.0, 1.0) * maxval)
    return out.astype(np.uint8 if bits == 8 else np.uint16)


def lab_to_srgb_int(l, ab, bits=8):
    """L (H, W) and ab (H, W, 2) -> sRGB uint8/uint16 (H, W, 3)."""
    lab = np.concatenate([np.asarray(l, np.float32)[..., None], np.asarray(ab, np.float32)], axis=-1)
    return quantize(lab_to_rgb(lab), bits)
