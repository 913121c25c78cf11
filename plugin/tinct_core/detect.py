# -*- coding: utf-8 -*-
"""Detect Damage, host independent: ask the engine where the photo is scratched, cracked, dusty or
torn, and paint that into the `Tinct damage` layer, which Colorize then restores.

What the user already painted on the layer stays: the found damage is added to it. The layer is
replaced by a fresh one inside one undo group (writing a fresh layer needs no pixel undo, and the
removal of the old one is undoable), so one undo brings back the layer as it was, or no layer.
Stdlib only, Python 2.7 and 3.
"""

from __future__ import absolute_import, division

import re

from . import roles
from .errors import TinctCancelled, TinctUserError
from .job import engine_progress, new_layer_place, undo_group
from .pixels import split_alpha

PAINT_RGB = b"\xff\x00\x00\xff"  # found damage shows red on an RGB image ...
PAINT_GRAY = b"\xff\xff"  # ... and white on a grayscale one


class DetectOutcome(object):
    def __init__(self, layer, found, info):
        self.layer = layer  # the `Tinct damage` LayerInfo
        self.found = found  # pixels the engine flagged
        self.info = info


def existing_damage_layer(layers):
    """The image's `Tinct damage` layer, shown or hidden, or None."""
    for info in layers:
        if info.name.startswith(roles.DAMAGE_NAME) and not info.is_group:
            return info
    return None


def placed_mask(mask, photo, area):
    """The photo-sized mask (bytes, 255 = damaged) placed on `area` (a layer's extent), zero elsewhere."""
    out = bytearray(area.width * area.height)
    dx, dy = photo.x - area.x, photo.y - area.y
    x0, x1 = max(0, dx), min(area.width, dx + photo.width)
    if x1 > x0:
        for y in range(max(0, dy), min(area.height, dy + photo.height)):
            s = (y - dy) * photo.width + (x0 - dx)
            out[y * area.width + x0:y * area.width + x1] = mask[s:s + x1 - x0]
    return bytes(out)


def paint(base, mask, paint_value):
    """base: the layer's pixels (bytearray, len(paint_value) channels); every run of flagged pixels in
    mask (same pixel order) is painted with paint_value. Runs, not pixels: a 12 MP photo stays fast."""
    c = len(paint_value)
    for m in re.finditer(b"\xff+", mask):
        a, b = m.start(), m.end()
        base[a * c:b * c] = paint_value * (b - a)
    return base


def detect_damage(host, engine, threshold=None, cancel=None):
    """The whole run. engine: an object with detect_damage(photo Pixels, threshold, progress, cancel)
    -> (mask bytes 255 = damaged, photo-sized; info) (engine.EngineBridge). Returns a DetectOutcome;
    raises TinctUserError with a plain message, and then the document is as it was."""
    photo, above = new_layer_place(host)  # (refuses indexed images)
    if photo.width <= 0 or photo.height <= 0:
        raise TinctUserError("The photo layer '%s' is empty." % photo.name)
    gray = host.base_type() == "GRAY"
    bits = 16 if host.precision_bits() > 8 else 8
    host.progress(0.0, "Tinct: reading the photo")
    pix, _alpha = split_alpha(host.read_pixels(photo, (1 if gray else 3) + (1 if photo.has_alpha else 0), bits))
    host.progress(0.05, "Tinct: detecting damage")
    mask, info = engine.detect_damage(pix, threshold, engine_progress(host), cancel)
    if cancel is not None and cancel():
        raise TinctCancelled()
    if len(mask) != photo.width * photo.height:
        raise TinctUserError("The engine returned a damage mask of the wrong size.")
    found = len(mask) - bytes(mask).count(b"\x00")

    old = existing_damage_layer(host.layers())
    area = old or photo
    channels, value = (2, PAINT_GRAY) if gray else (4, PAINT_RGB)
    if old is not None:
        base = bytearray(host.read_pixels(old, channels, 8).data)
    else:
        base = bytearray(area.width * area.height * channels)
    pixels = paint(base, placed_mask(bytes(mask), photo, area), value)

    host.progress(0.92, "Tinct: painting the damage layer")
    made = []
    with undo_group(host, made):
        made.append(host.new_mask_layer(old or above, roles.DAMAGE_NAME, area,
                                        old.opacity if old else 100.0, old.visible if old else True))
        created = made[0]
        host.write_layer_bytes(created, pixels, channels)
        if old is not None:
            host.remove_layer(old)
            host.rename_layer(created, roles.DAMAGE_NAME)
    host.flush()
    host.progress(1.0, "Tinct: done")
    return DetectOutcome(created, found, info)
