# -*- coding: utf-8 -*-
"""Interactive…, host independent: the photo and its hint points go to the colorization window
(`tinct ui`), and its Apply comes back as the `Tinct hints` layer (one dot per point) and the
`Tinct color` layer, in one undo group. Cancel, or closing the window, changes nothing.

GIMP stays the source of truth: the window gets copies in a private folder of the user's
runtime directory (photo.png, hints.png, removed afterwards) and answers with the points only
(result.json); the colors are then computed by the engine like Colorize Again's. The window
is a separate program, run with the engine's Python. Stdlib only, Python 2.7 and 3.
"""

from __future__ import absolute_import, division

import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib

from . import roles
from .errors import TinctCancelled, TinctUserError
from .job import apply_result, plan_colorize, undo_group
from .pixels import Pixels, _bytes, _units

PNG_COLOR_TYPES = {1: 0, 2: 4, 3: 2, 4: 6}   # channels -> PNG color type (gray, gray+alpha, RGB, RGBA)
INTERRUPTED = (130, -2)   # `tinct` stopped by SIGINT (after its handler, or before Python installed one)


def write_png(path, pix):
    """A Pixels buffer (8 or 16 bits, 1-4 channels) as a PNG file, with the stdlib alone."""
    data = pix.data
    if pix.bits == 16 and sys.byteorder == "little":   # PNG samples are big-endian
        units = _units(data, 16)
        units.byteswap()
        data = _bytes(units)
    stride = pix.width * pix.channels * pix.bits // 8
    raw = b"".join(b"\x00" + bytes(data[y * stride:(y + 1) * stride]) for y in range(pix.height))

    def chunk(kind, body):
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body) & 0xffffffff))

    header = struct.pack(">IIBBBBB", pix.width, pix.height, pix.bits, PNG_COLOR_TYPES[pix.channels], 0, 0, 0)
    with open(path, "wb") as fh:
        fh.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 1))
                 + chunk(b"IEND", b""))


def composed_hints(plan):
    """The plan's hint layers as one photo-sized RGBA 8-bit buffer, upper layers over lower ones
    (the window turns each painted blob into a point)."""
    photo = plan.photo
    W, H = photo.width, photo.height
    out = bytearray(W * H * 4)
    for rgba, dx, dy, _opacity in plan.hints:
        data = bytes(rgba.data)
        for m in re.finditer(b"[^\x00]+", data[3::4]):
            for i in range(m.start(), m.end()):
                x, y = i % rgba.width + dx, i // rgba.width + dy
                if 0 <= x < W and 0 <= y < H:
                    out[(y * W + x) * 4:(y * W + x + 1) * 4] = data[4 * i:4 * i + 3] + b"\xff"
    return Pixels(bytes(out), W, H, 4, 8)


def points_layer(points, width, height):
    """RGBA 8-bit pixels of a `Tinct hints` layer: one opaque dot per point."""
    out = bytearray(width * height * 4)
    for p in points:
        x, y, rgb = int(p["x"]), int(p["y"]), p["rgb"]
        if 0 <= x < width and 0 <= y < height:
            out[(y * width + x) * 4:(y * width + x + 1) * 4] = bytearray([int(v) for v in rgb] + [255])
    return Pixels(bytes(out), width, height, 4, 8)


def window_command(engine_command):
    """`tinct ui` with the engine's Python, from the command that starts the engine ([..., "serve", ...])."""
    if not engine_command or "serve" not in engine_command:
        raise TinctUserError("Tinct does not know which Python runs its engine; run tinct-install again.")
    return list(engine_command[:engine_command.index("serve")]) + ["ui"]


def run_window(command, photo_path, hints_path, result_path, points_path=None):
    """Open the window and wait for it to close: the points it applied, or None (cancelled)."""
    cmd = list(command) + [photo_path, "--hints", hints_path, "--apply-to", result_path]
    if points_path:
        cmd += ["--apply-points", points_path]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = proc.communicate()
    text = (err or out or b"").decode("utf-8", "replace").strip().splitlines()
    # Ctrl+C in its terminal is like closing the window, also when it lands while Python is still
    # starting or already exiting (a bare KeyboardInterrupt traceback, exit status 1)
    if proc.returncode in INTERRUPTED or (proc.returncode and text and text[-1].strip() == "KeyboardInterrupt"):
        return None
    if proc.returncode != 0:
        raise TinctUserError("The Tinct window failed: %s" % (text[-1] if text else "exit status %d" % proc.returncode))
    if not os.path.exists(result_path):
        return None
    with open(result_path) as fh:
        return json.load(fh)["points"]


def private_folder():
    """A 0700 folder for the window's copies, in the user's runtime directory when there is one."""
    base = os.environ.get("XDG_RUNTIME_DIR")
    return tempfile.mkdtemp(prefix="tinct-ui-", dir=base if base and os.path.isdir(base) else None)


def interactive(host, settings, engine, window, points_path=None, cancel=None):
    """The whole run. window(photo_path, hints_path, result_path, points_path) -> points or None
    (run_window with the command bound). Returns the `Tinct color` layer, or None when cancelled;
    raises TinctUserError with a plain message, and then the document is as it was."""
    plan = plan_colorize(host, settings, max_pixels=engine.max_pixels)
    folder = private_folder()
    try:
        photo_path, hints_path = os.path.join(folder, "photo.png"), os.path.join(folder, "hints.png")
        host.progress(0.05, "Tinct: opening the window")
        write_png(photo_path, plan.photo_pixels)
        write_png(hints_path, composed_hints(plan))
        points = window(photo_path, hints_path, os.path.join(folder, "result.json"), points_path)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    if points is None:
        return None
    W, H = plan.photo.width, plan.photo.height
    dots = points_layer(points, W, H)
    replaced = [info for info in roles.hint_layers(host.layers(), plan.photo)]
    plan.hints = [(dots, 0, 0, 1.0)] if points else []
    host.progress(0.1, "Tinct: colorizing")
    rgb, info = engine.colorize(plan, settings, lambda f, t=None: host.progress(0.1 + 0.8 * float(f), t), cancel)
    if cancel is not None and cancel():
        raise TinctCancelled()
    host.progress(0.92, "Tinct: placing the result")
    created = []
    with undo_group(host, created):
        layer, _ = apply_result(host, plan, rgb, settings)   # (its own undo group nests in this one)
        created.append(host.new_mask_layer(layer, roles.HINTS_PREFIX, plan.photo, 100.0, True))
        host.write_layer_bytes(created[0], dots.data, 4)
        for old in replaced:   # their dots are now the points (one undo brings them back)
            host.remove_layer(old)
        host.rename_layer(created[0], roles.HINTS_PREFIX)
    host.flush()
    host.progress(1.0, "Tinct: done")
    return layer
