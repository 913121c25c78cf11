# -*- coding: utf-8 -*-
"""Layer roles: which layer is the photo, which are hints, where the result goes.

Host independent: the GIMP adapters describe their layers as `LayerInfo` records
(top of the stack first, as GIMP lists them) and this module decides the roles.
Stdlib only, Python 2.7 and 3.
"""

from __future__ import absolute_import, division

from .errors import TinctUserError

HINTS_PREFIX = "Tinct hints"
RESULT_NAME = "Tinct color"
RESTORED_NAME = "Tinct restored"
DAMAGE_NAME = "Tinct damage"
REFERENCE_NAME = "Tinct reference"
INSTANCE_PREFIX = "Tinct instance"
TINCT_PREFIX = "Tinct "


class LayerInfo(object):
    """What the core needs to know about one layer.

    handle:   the host's own object (Gimp.Layer, gimp.Layer, a test fake); opaque here
    name, visible (including all parent groups), x, y (offsets), width, height,
    opacity (0..100), has_alpha, image_id (the image the layer belongs to).
    """

    __slots__ = ("handle", "name", "visible", "x", "y", "width", "height", "opacity",
                 "has_alpha", "image_id", "is_group")

    def __init__(self, handle, name, visible=True, x=0, y=0, width=0, height=0,
                 opacity=100.0, has_alpha=False, image_id=None, is_group=False):
        self.handle = handle
        self.name = name or ""
        self.visible = bool(visible)
        self.x = int(x)
        self.y = int(y)
        self.width = int(width)
        self.height = int(height)
        self.opacity = float(opacity)
        self.has_alpha = bool(has_alpha)
        self.image_id = image_id
        self.is_group = bool(is_group)

    def __repr__(self):
        return "LayerInfo(%r, %dx%d+%d+%d)" % (self.name, self.width, self.height, self.x, self.y)


def is_hint_name(name):
    return (name or "").startswith(HINTS_PREFIX)


def is_tinct_name(name):
    """A layer Tinct made or reads (hints, result, restored damage, damage, reference)."""
    name = name or ""
    return (name.startswith(HINTS_PREFIX) or name.startswith(RESULT_NAME) or name.startswith(RESTORED_NAME)
            or name.startswith(DAMAGE_NAME) or name.startswith(REFERENCE_NAME))


def _index(layers, handle):
    for i, info in enumerate(layers):
        if info.handle == handle:
            return i
    return -1


def find_photo(layers, selected):
    """The photo layer: the selected layer, or the layer a selected Tinct layer belongs to.

    layers: top-first list of LayerInfo; selected: list of LayerInfo (may be empty).
    A Tinct layer belongs to the first non-Tinct layer below it.
    """
    if not selected:
        raise TinctUserError("No layer is selected. Select the photo layer and run Tinct again.")
    chosen = selected[0]
    if chosen.is_group:
        raise TinctUserError("The selected layer '%s' is a layer group. Select the photo layer itself."
                             % chosen.name)
    if not is_tinct_name(chosen.name):
        return chosen
    start = _index(layers, chosen.handle)
    if start >= 0:
        for info in layers[start + 1:]:
            if not info.is_group and not is_tinct_name(info.name):
                return info
    raise TinctUserError("The selected layer '%s' is a Tinct layer and there is no photo layer below it. "
                         "Select the photo layer and run Tinct again." % chosen.name)


def hint_layers(layers, photo=None):
    """Visible `Tinct hints…` layers, bottom first (the order they are merged in)."""
    found = [info for info in layers if is_hint_name(info.name) and info.visible and not info.is_group]
    found.reverse()
    return found


def reference_layer(layers):
    for info in layers:
        if info.name.startswith(REFERENCE_NAME) and not info.is_group:
            return info
    return None


def damage_layer(layers):
    for info in layers:
        if info.name.startswith(DAMAGE_NAME) and info.visible and not info.is_group:
            return info
    return None


def result_layer(layers, photo, name=RESULT_NAME):
    """The existing `Tinct color` layer (or `name`: `Tinct restored`) that belongs to the photo, or None.

    It belongs to the photo when it sits above it with only Tinct layers in between
    (the place Tinct puts it).
    """
    pos = _index(layers, photo.handle)
    if pos < 0:
        return None
    i = pos - 1
    while i >= 0:
        info = layers[i]
        if (info.name or "").startswith(name) and not info.is_group:
            return info
        if not is_tinct_name(info.name):
            break
        i -= 1
    return None


def instance_channel_names(names):
    return [n for n in names if (n or "").startswith(INSTANCE_PREFIX)]


def relative_offset(layer, photo):
    """The layer's offset relative to the photo's top-left corner."""
    return layer.x - photo.x, layer.y - photo.y


def overlaps(layer, photo):
    dx, dy = relative_offset(layer, photo)
    return dx < photo.width and dy < photo.height and dx + layer.width > 0 and dy + layer.height > 0
