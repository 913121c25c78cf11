import os
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from engine import TinctError
from engine.imageio import load_image, save_png


def _paeth(a, b, c):
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb and pa <= pc else (b if pb <= pc else c)


def write_filtered_png16(path, arr):
    """A reference PNG encoder that uses every filter type, to test our decoder
    the way GIMP's and other encoders' 16-bit files exercise it."""
    h, w, c = arr.shape
    raw = arr.astype(">u2").reshape(h, -1).view(np.uint8).astype(int)
    bpp = c * 2
    rows = []
    for y in range(h):
        ftype = y % 5
        cur, prev = raw[y], raw[y - 1] if y else np.zeros_like(raw[0])
        out = []
        for x in range(len(cur)):
            left = cur[x - bpp] if x >= bpp else 0
            up = prev[x]
            ul = prev[x - bpp] if x >= bpp else 0
            pred = [0, left, up, (left + up) // 2, _paeth(left, up, ul)][ftype]
            out.append((cur[x] - pred) & 255)
        rows.append(bytes([ftype]) + bytes(out))

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    color_type = 2 if c == 3 else 6
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, color_type, 0, 0, 0))
    data += chunk(b"IDAT", zlib.compress(b"".join(rows))) + chunk(b"IEND", b"")
    with open(path, "wb") as f:
        f.write(data)


@pytest.mark.parametrize("channels", [3, 4])
def test_16bit_png_with_all_filters_decodes_exactly(tmp_path, channels):
    arr = np.random.default_rng(channels).integers(0, 65536, (23, 19, channels)).astype(np.uint16)
    path = str(tmp_path / "f.png")
    write_filtered_png16(path, arr)
    got = load_image(path)
    assert got.dtype == np.uint16 and np.array_equal(got, arr)


def test_png_writer_round_trips_8_and_16_bit(tmp_path):
    for dtype, hi in ((np.uint8, 256), (np.uint16, 65536)):
        arr = np.random.default_rng(0).integers(0, hi, (300, 70, 3)).astype(dtype)
        p = str(tmp_path / ("o%d.png" % hi))
        save_png(p, arr)
        assert np.array_equal(load_image(p), arr)
        assert not os.path.exists(p + ".part")


def test_modes_load_as_gray_rgb_rgba(tmp_path):
    g16 = (np.arange(40 * 30) * 50 % 65536).astype(np.uint16).reshape(30, 40)
    Image.fromarray(g16).save(tmp_path / "g16.png")
    assert load_image(str(tmp_path / "g16.png")).dtype == np.uint16
    Image.new("L", (20, 20), 128).save(tmp_path / "g.jpg")
    assert load_image(str(tmp_path / "g.jpg")).shape == (20, 20)
    Image.new("RGBA", (20, 20), (1, 2, 3, 4)).save(tmp_path / "a.png")
    assert load_image(str(tmp_path / "a.png")).shape == (20, 20, 4)


@pytest.mark.parametrize("content,problem", [
    (b"", "empty file"),
    (b"this is not an image at all", "cannot read"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR", "cannot read"),  # truncated
])
def test_bad_files_give_one_line_errors(tmp_path, content, problem):
    p = tmp_path / "bad.png"
    p.write_bytes(content)
    with pytest.raises(TinctError) as e:
        load_image(str(p))
    assert str(p) in str(e.value) and problem in str(e.value) and "\n" not in str(e.value)


def test_missing_and_tiny(tmp_path):
    with pytest.raises(TinctError, match="not found"):
        load_image(str(tmp_path / "nope.png"))
    Image.new("L", (8, 40)).save(tmp_path / "tiny.png")
    with pytest.raises(TinctError, match="too small"):
        load_image(str(tmp_path / "tiny.png"))
