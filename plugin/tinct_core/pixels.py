# -*- coding: utf-8 -*-
"""Raw pixel buffers as plain bytes: interleave and split channels, check alpha.

GIMP hands pixels out as packed bytes (Gegl buffers in GIMP 3, pixel regions in
GIMP 2.10); the engine takes the same raw bytes with width/height/channels/dtype.
Everything here is slicing on bytes/arrays (C speed), stdlib only, Python 2.7 and 3.
"""

from __future__ import absolute_import, division

from array import array

DTYPES = {8: "uint8", 16: "uint16"}


class Pixels(object):
    """A packed, row-major pixel buffer (native byte order for 16 bits)."""

    __slots__ = ("data", "width", "height", "channels", "bits")

    def __init__(self, data, width, height, channels, bits=8):
        if bits not in DTYPES:
            raise ValueError("bits must be 8 or 16, not %r" % (bits,))
        expected = int(width) * int(height) * int(channels) * (bits // 8)
        if len(data) != expected:
            raise ValueError("pixel buffer has %d bytes, expected %d for %dx%d, %d channels, %d bits"
                             % (len(data), expected, width, height, channels, bits))
        self.data = data
        self.width = int(width)
        self.height = int(height)
        self.channels = int(channels)
        self.bits = bits

    @property
    def dtype(self):
        return DTYPES[self.bits]

    @property
    def shape(self):
        if self.channels == 1:
            return (self.height, self.width)
        return (self.height, self.width, self.channels)

    def __repr__(self):
        return "Pixels(%dx%d, %d ch, %d bits)" % (self.width, self.height, self.channels, self.bits)


def _units(data, bits):
    """A mutable sequence of samples over `data` (bytearray for 8 bits, array('H') for 16)."""
    if bits == 8:
        return bytearray(data)
    out = array("H")
    load = getattr(out, "frombytes", None) or getattr(out, "fromstring")  # Python 3 / Python 2.7
    load(bytes(data))
    return out


def _bytes(units):
    if isinstance(units, bytearray):
        return bytes(units)
    dump = getattr(units, "tobytes", None) or getattr(units, "tostring")  # Python 3 / Python 2.7
    return dump()


def _empty(n, bits):
    if bits == 8:
        return bytearray(n)
    return array("H", [0]) * n


def split_alpha(pix):
    """(color Pixels without alpha, alpha bytes or None) from a Y/YA/RGB/RGBA buffer."""
    if pix.channels in (1, 3):
        return pix, None
    cc = pix.channels - 1
    units = _units(pix.data, pix.bits)
    n = pix.width * pix.height
    color = _empty(n * cc, pix.bits)
    for c in range(cc):
        color[c::cc] = units[c::pix.channels]
    alpha = units[cc::pix.channels]
    return Pixels(_bytes(color), pix.width, pix.height, cc, pix.bits), _bytes(alpha)


def add_alpha(pix, alpha):
    """Interleave `alpha` (bytes in pix.bits, one sample per pixel) into a Y/RGB buffer."""
    if alpha is None:
        return pix
    cc = pix.channels
    units = _units(pix.data, pix.bits)
    a = _units(alpha, pix.bits)
    n = pix.width * pix.height
    if len(a) != n:
        raise ValueError("alpha has %d samples for %d pixels" % (len(a), n))
    out = _empty(n * (cc + 1), pix.bits)
    for c in range(cc):
        out[c::cc + 1] = units[c::cc]
    out[cc::cc + 1] = a
    return Pixels(_bytes(out), pix.width, pix.height, cc + 1, pix.bits)


def placed_alpha(rgba, dx, dy, width, height, bits=8):
    """Where an 8-bit RGBA layer at offset (dx, dy) is painted (alpha > 0), as fully opaque or fully
    transparent alpha samples (in `bits`) of a width x height buffer: a damage layer over the photo."""
    painted = bytearray(rgba.data)[3::4].translate(bytes(bytearray([0] + [255] * 255)))
    out = bytearray(width * height)
    x0, x1 = max(0, dx), min(width, dx + rgba.width)
    if x1 > x0:
        for y in range(max(0, dy), min(height, dy + rgba.height)):
            s = (y - dy) * rgba.width + (x0 - dx)
            out[y * width + x0:y * width + x1] = painted[s:s + x1 - x0]
    if bits == 16:  # 0x00 -> 0x0000, 0xff -> 0xffff in either byte order
        wide = bytearray(2 * len(out))
        wide[0::2] = out
        wide[1::2] = out
        out = wide
    return bytes(out)


def alpha_is_empty(rgba):
    """True when every pixel of an 8-bit RGBA buffer is fully transparent (no hint painted)."""
    data = rgba.data if isinstance(rgba, Pixels) else rgba
    alpha = bytes(bytearray(data)[3::4])
    return not alpha.strip(b"\x00")


def count_painted(rgba):
    """Number of pixels with alpha > 0 in an 8-bit RGBA buffer."""
    data = rgba.data if isinstance(rgba, Pixels) else rgba
    alpha = bytes(bytearray(data)[3::4])
    return len(alpha) - alpha.count(b"\x00")


def mask_is_empty(mask):
    data = mask.data if isinstance(mask, Pixels) else mask
    return not bytes(bytearray(data)).strip(b"\x00")


def to_8bit(pix):
    """A 16-bit buffer reduced to 8 bits (rounding), for hints and references."""
    if pix.bits == 8:
        return pix
    units = _units(pix.data, 16)
    out = bytearray((v * 255 + 32767) // 65535 for v in units)
    return Pixels(bytes(out), pix.width, pix.height, pix.channels, 8)


def to_16bit(pix):
    """An 8-bit buffer widened to 16 bits (v * 257: 0 -> 0, 255 -> 65535)."""
    if pix.bits == 16:
        return pix
    out = array("H", [v * 257 for v in bytearray(pix.data)])
    return Pixels(_bytes(out), pix.width, pix.height, pix.channels, 16)


def convert_channels(pix, channels):
    """The buffer with 1 (Y), 2 (YA), 3 (RGB) or 4 (RGBA) channels: gray is replicated, RGB is reduced
    to its luma (Rec. 601, as GIMP 2 does), and a missing alpha is opaque."""
    if pix.channels == channels:
        return pix
    color, alpha = split_alpha(pix)
    want_alpha = channels in (2, 4)
    want_rgb = channels >= 3
    units = _units(color.data, pix.bits)
    n = pix.width * pix.height
    if want_rgb and color.channels == 1:
        out = _empty(n * 3, pix.bits)
        out[0::3] = units
        out[1::3] = units
        out[2::3] = units
        color = Pixels(_bytes(out), pix.width, pix.height, 3, pix.bits)
    elif not want_rgb and color.channels == 3:
        r, g, b = units[0::3], units[1::3], units[2::3]
        out = _empty(n, pix.bits)
        for i in range(n):
            out[i] = (299 * r[i] + 587 * g[i] + 114 * b[i] + 500) // 1000
        color = Pixels(_bytes(out), pix.width, pix.height, 1, pix.bits)
    if not want_alpha:
        return color
    if alpha is None:
        top = 255 if pix.bits == 8 else 65535
        alpha = _bytes(_full(n, pix.bits, top))
    return add_alpha(color, alpha)


def _full(n, bits, value):
    if bits == 8:
        return bytearray([value]) * n
    return array("H", [value]) * n
