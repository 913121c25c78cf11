"""Reading any photo into numpy and writing PNGs (8 or 16 bits) row by row.

Pillow reads 16-bit RGB PNGs only as 8-bit, so PNGs go through a small decoder
of our own when they are 16-bit color; everything else goes through Pillow.
The PNG writer streams rows through zlib, so a 100 MP result never needs a
second full-size copy in memory.
"""

import os
import struct
import zlib

import numpy as np
from PIL import Image

from . import TinctError

MAX_PIXELS = 100_000_000 + 1  # the product's limit; Pillow's bomb check stays armed above it
Image.MAX_IMAGE_PIXELS = MAX_PIXELS
MIN_SIDE = 16

_PNG_SIG = b"\x89PNG\r\n\x1a\n"


def load_image(path, what="image"):
    """Read an image file -> ndarray (H, W) gray or (H, W, 3|4); uint8 or uint16.

    Raises TinctError with a one-line message naming the file and the problem.
    """
    name = os.fspath(path)
    if not os.path.exists(name):
        raise TinctError("%s: %s not found" % (name, what))
    if os.path.isdir(name):
        raise TinctError("%s: is a folder, not an %s file" % (name, what))
    if os.path.getsize(name) == 0:
        raise TinctError("%s: empty file (0 bytes), not an %s" % (name, what))
    try:
        with open(name, "rb") as f:
            head = f.read(32)
        if head.startswith(_PNG_SIG) and head[24] == 16 and head[25] in (2, 6):
            arr = _read_png16(name)
        else:
            with Image.open(name) as im:
                im.load()
                arr = _pil_to_array(im)
    except TinctError:
        raise
    except Image.DecompressionBombError:
        raise TinctError("%s: larger than Tinct's limit of 100 megapixels" % name)
    except Exception as exc:  # Pillow raises many kinds for broken files
        raise TinctError("%s: cannot read as an %s (%s)" % (name, what, str(exc).splitlines()[0] if str(exc) else type(exc).__name__))
    check_size(arr, name)
    return arr


def check_size(arr, name="image"):
    h, w = arr.shape[:2]
    if h == 0 or w == 0:
        raise TinctError("%s: zero-size image (%dx%d)" % (name, w, h))
    if h < MIN_SIDE or w < MIN_SIDE:
        raise TinctError("%s: %dx%d is too small; Tinct needs at least %dx%d" % (name, w, h, MIN_SIDE, MIN_SIDE))
    if h * w > MAX_PIXELS:
        raise TinctError("%s: %dx%d is %.0f MP, over Tinct's limit of 100 MP" % (name, w, h, h * w / 1e6))


def _pil_to_array(im):
    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        return np.asarray(im.convert("I")).astype(np.uint16)
    if mode == "I":
        a = np.asarray(im)
        return np.clip(a, 0, 65535).astype(np.uint16) if a.max() > 255 else a.astype(np.uint8)
    if mode == "F":
        return np.clip(np.asarray(im), 0.0, 1.0).astype(np.float32)
    if mode in ("1", "L", "P", "PA", "LA", "CMYK", "YCbCr", "LAB", "HSV", "RGBX", "RGBa", "La"):
        if mode == "1" or mode == "L":
            return np.asarray(im.convert("L"))
        if mode in ("LA", "La"):
            return np.asarray(im.convert("LA"))[..., 0]
        if mode in ("P", "PA"):
            im = im.convert("RGBA")
            a = np.asarray(im)
            return a if (a[..., 3] < 255).any() else a[..., :3]
        return np.asarray(im.convert("RGB"))
    if mode in ("RGB", "RGBA"):
        return np.asarray(im)
    return np.asarray(im.convert("RGB"))


def _read_png16(path):
    """Decode a 16-bit RGB/RGBA non-interlaced PNG (what Pillow truncates to 8 bits)."""
    with open(path, "rb") as f:
        data = f.read()
    pos = 8
    idat = []
    width = height = color_type = None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, color_type, _, _, interlace = struct.unpack(">IIBBBBB", body)
            if interlace:
                raise TinctError("%s: interlaced 16-bit PNGs are not supported; save it non-interlaced" % path)
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
        pos += 12 + length
    channels = 3 if color_type == 2 else 4
    check_size(np.empty((height, width, 0)), path)
    raw = np.frombuffer(zlib.decompress(b"".join(idat)), np.uint8)
    stride = width * channels * 2
    rows = raw.reshape(height, stride + 1)
    out = np.empty((height, stride), np.uint8)
    bpp = channels * 2
    prev = np.zeros(stride, np.int32)
    for y in range(height):
        ftype = rows[y, 0]
        line = rows[y, 1:].astype(np.int32)
        if ftype == 0:
            cur = line
        elif ftype == 2:
            cur = (line + prev) & 255
        else:
            cur = _unfilter_sequential(ftype, line, prev, bpp)
        out[y] = cur
        prev = cur.astype(np.int32)
    return out.view(">u2").reshape(height, width, channels).astype(np.uint16)


def _unfilter_sequential(ftype, line, prev, bpp):
    """Sub / Average / Paeth filters depend on the pixel to the left: undo them pixel group by group."""
    n = len(line)
    cur = np.zeros(n, np.int32)
    if ftype == 1:  # Sub: a running sum per byte lane
        lanes = line.reshape(-1, bpp)
        return (np.cumsum(lanes, axis=0) & 255).reshape(-1)
    for x in range(0, n, bpp):
        left = cur[x - bpp:x] if x else np.zeros(bpp, np.int32)
        up = prev[x:x + bpp]
        if ftype == 3:
            pred = (left + up) >> 1
        elif ftype == 4:
            upleft = prev[x - bpp:x] if x else np.zeros(bpp, np.int32)
            p = left + up - upleft
            pa, pb, pc = np.abs(p - left), np.abs(p - up), np.abs(p - upleft)
            pred = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, up, upleft))
        else:
            raise TinctError("corrupt PNG: unknown filter type %d" % ftype)
        cur[x:x + bpp] = (line[x:x + bpp] + pred) & 255
    return cur


class PngWriter:
    """Streams an RGB/RGBA/gray PNG, 8 or 16 bits, one block of rows at a time."""

    def __init__(self, path, width, height, channels=3, bits=8, level=6):
        self.path = path
        self.tmp = path + ".part"
        self.f = open(self.tmp, "wb")
        self.width, self.height, self.channels, self.bits = width, height, channels, bits
        color_type = {1: 0, 3: 2, 4: 6}[channels]
        self.f.write(_PNG_SIG)
        self._chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, bits, color_type, 0, 0, 0))
        self.z = zlib.compressobj(level)
        self.rows = 0

    def _chunk(self, kind, body):
        self.f.write(struct.pack(">I", len(body)) + kind + body)
        self.f.write(struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))

    def write_rows(self, block):
        block = np.asarray(block)
        dtype = ">u2" if self.bits == 16 else np.uint8
        raw = np.ascontiguousarray(block.astype(dtype)).reshape(block.shape[0], -1).view(np.uint8)
        framed = np.concatenate([np.zeros((raw.shape[0], 1), np.uint8), raw], axis=1)
        out = self.z.compress(framed.tobytes())
        if out:
            self._chunk(b"IDAT", out)
        self.rows += block.shape[0]

    def close(self):
        if self.rows != self.height:
            self.abort()
            raise RuntimeError("PNG writer got %d rows, expected %d" % (self.rows, self.height))
        self._chunk(b"IDAT", self.z.flush())
        self._chunk(b"IEND", b"")
        self.f.close()
        os.replace(self.tmp, self.path)

    def abort(self):
        self.f.close()
        if os.path.exists(self.tmp):
            os.remove(self.tmp)


def save_png(path, arr):
    """Write a whole array (uint8 or uint16) as PNG."""
    arr = np.asarray(arr)
    channels = 1 if arr.ndim == 2 else arr.shape[2]
    w = PngWriter(path, arr.shape[1], arr.shape[0], channels, 16 if arr.dtype == np.uint16 else 8)
    try:
        for y in range(0, arr.shape[0], 256):
            w.write_rows(arr[y:y + 256])
        w.close()
    except BaseException:
        w.abort()
        raise
