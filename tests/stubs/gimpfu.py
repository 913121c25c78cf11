"""A stand-in for GIMP 2.10's `gimpfu` module, for testing tinct_gimp2 without GIMP.

It records every call (CALLS), keeps images/layers/channels in memory with real
pixel buffers served through pixel regions (rgn[x0:x1, y0:y1] get/set, as gimpfu
does), and implements the PDB procedures the plug-in uses. Undo groups snapshot
the image so a test can undo() a whole group and compare.
Import it with tests/stubs on sys.path (see tests/test_plugin_gimp2.py).
"""

import copy
import itertools

CALLS = []
PROCEDURES = {}
MESSAGES = []
PROGRESS = []
# GIMP 2.10 hands plug-ins 8-bit pixels ("compat" format) until gimp_plugin_enable_precision().
STATE = {"precision_enabled": False}

RGB, GRAY, INDEXED = 0, 1, 2
RGB_IMAGE, RGBA_IMAGE, GRAY_IMAGE, GRAYA_IMAGE, INDEXED_IMAGE, INDEXEDA_IMAGE = range(6)
CHANNELS = {RGB_IMAGE: 3, RGBA_IMAGE: 4, GRAY_IMAGE: 1, GRAYA_IMAGE: 2, INDEXED_IMAGE: 1, INDEXEDA_IMAGE: 2}
LAYER_MODE_NORMAL, LAYER_MODE_LCH_COLOR = 28, 26
TRANSPARENT_FILL = 3
(PF_IMAGE, PF_DRAWABLE, PF_LAYER, PF_OPTION, PF_FILE, PF_SPINNER, PF_SLIDER, PF_STRING, PF_INT,
 PF_FLOAT, PF_TOGGLE) = range(11)

_ids = itertools.count(1)


def reset():
    del CALLS[:]
    del MESSAGES[:]
    del PROGRESS[:]
    STATE["precision_enabled"] = False


def _record(name, *args):
    CALLS.append((name,) + args)


def register(proc_name, blurb, help_text, author, copyright_, date, label, imagetypes, params, results,
             function, menu=None, domain=None, on_query=None, on_run=None):
    PROCEDURES[proc_name] = {"label": label, "menu": menu, "params": params, "results": results,
                             "function": function, "imagetypes": imagetypes, "blurb": blurb, "help": help_text}


def main():
    _record("main")


def _narrow(data):
    """Native little-endian 16-bit samples -> 8-bit, as GIMP's compat format rounds them."""
    words = bytearray(data)
    return bytes(bytearray(((words[i] | words[i + 1] << 8) * 255 + 32767) // 65535
                           for i in range(0, len(words), 2)))


def _widen(data):
    out = bytearray()
    for v in bytearray(data):
        w = v * 257
        out += bytearray([w & 255, w >> 8])
    return bytes(out)


class PixelRgn(object):
    """A pixel region: rows of the drawable's pixels in the format the plug-in sees (drawable.bpp)."""

    def __init__(self, drawable, x, y, w, h, dirty, shadow):
        self.drawable, self.x, self.y, self.w, self.h = drawable, x, y, w, h
        self.dirty, self.shadow = dirty, shadow
        self.bpp = drawable.bpp
        self.compat = drawable.bytes_per_sample == 2 and self.bpp == drawable.channels

    def _check(self, key):
        xs, ys = key
        x0, x1, y0, y1 = xs.start, xs.stop, ys.start, ys.stop
        d = self.drawable
        if not (self.x <= x0 < x1 <= self.x + self.w and self.y <= y0 < y1 <= self.y + self.h
                and x1 <= d.width and y1 <= d.height):
            raise IndexError("pixel region access out of range: %r" % (key,))
        return x0, x1, y0, y1

    def __getitem__(self, key):
        x0, x1, y0, y1 = self._check(key)
        d = self.drawable
        _record("rgn_get", d.name, (x0, y0, x1 - x0, y1 - y0))
        nbpp = d.native_bpp
        rows = [bytes(d.buffer[(y * d.width + x0) * nbpp:(y * d.width + x1) * nbpp]) for y in range(y0, y1)]
        data = b"".join(rows)
        return _narrow(data) if self.compat else data

    def __setitem__(self, key, data):
        if not self.dirty:
            raise ValueError("pixel region is not writable")
        x0, x1, y0, y1 = self._check(key)
        d, bpp = self.drawable, self.bpp
        step = (x1 - x0) * bpp
        if len(data) != step * (y1 - y0):
            raise ValueError("pixel region set: %d bytes for %d" % (len(data), step * (y1 - y0)))
        _record("rgn_set", d.name, (x0, y0, x1 - x0, y1 - y0), self.shadow)
        if self.compat:
            data, step = _widen(data), step * 2
        nbpp = d.native_bpp
        for i, y in enumerate(range(y0, y1)):
            d.buffer[(y * d.width + x0) * nbpp:(y * d.width + x1) * nbpp] = data[i * step:(i + 1) * step]


class Drawable(object):
    def __init__(self, image, name, width, height, type_, opacity=100.0, mode=LAYER_MODE_NORMAL):
        self.ID = next(_ids)
        self.image = image
        self.name = name
        self.width, self.height = width, height
        self.type = type_
        self.opacity = float(opacity)
        self.mode = mode
        self.visible = True
        self.offsets = (0, 0)
        self.parent = None
        self.bytes_per_sample = 1 if image is None else image.bytes_per_sample
        self.buffer = bytearray(width * height * self.native_bpp)

    @property
    def channels(self):
        return CHANNELS[self.type]

    @property
    def native_bpp(self):
        """Bytes per pixel as the image stores them (the stub's buffer)."""
        return self.channels * self.bytes_per_sample

    @property
    def bpp(self):
        """Bytes per pixel as the plug-in sees them: 8-bit samples until precision is enabled."""
        return self.channels * (self.bytes_per_sample if STATE["precision_enabled"] else 1)

    @property
    def is_rgb(self):
        return self.type in (RGB_IMAGE, RGBA_IMAGE)

    @property
    def is_gray(self):
        return self.type in (GRAY_IMAGE, GRAYA_IMAGE)

    @property
    def has_alpha(self):
        return self.type in (RGBA_IMAGE, GRAYA_IMAGE, INDEXEDA_IMAGE)

    def get_pixel_rgn(self, x, y, w, h, dirty=True, shadow=False):
        return PixelRgn(self, x, y, w, h, dirty, shadow)

    def set_offsets(self, x, y):
        _record("set_offsets", self.name, x, y)
        self.offsets = (x, y)

    def flush(self):
        _record("flush", self.name)

    def update(self, x, y, w, h):
        _record("update", self.name, (x, y, w, h))

    def merge_shadow(self, undo):
        _record("merge_shadow", self.name, undo)

    def fill(self, fill_type):
        _record("fill", self.name, fill_type)
        if fill_type == TRANSPARENT_FILL:
            self.buffer[:] = bytearray(len(self.buffer))

    def __repr__(self):
        return "<%s %r>" % (type(self).__name__, self.name)


class Layer(Drawable):
    pass


class GroupLayer(Layer):
    def __init__(self, image, name="Group"):
        Layer.__init__(self, image, name, 0, 0, RGBA_IMAGE)
        self.children = []


class Channel(Drawable):
    def __init__(self, image, name, width, height):
        Drawable.__init__(self, image, name, width, height, GRAY_IMAGE)
        self.bytes_per_sample = 1
        self.buffer = bytearray(width * height)


class Image(object):
    def __init__(self, width, height, base_type=RGB, precision="u8-gamma"):
        self.ID = next(_ids)
        self.width, self.height = width, height
        self.base_type = base_type
        self.precision = precision
        self.layers = []
        self.channels = []
        self.active_layer = None
        self.selection = Channel(self, "selection", width, height)
        self.undo_depth = 0
        self.undo_groups = []
        self._snapshot = None

    @property
    def bytes_per_sample(self):
        """The stub stores 8-bit and 16-bit images natively; other precisions are stored as 8-bit
        (what a plug-in sees of them without enabling precision)."""
        return 2 if ("16" in str(self.precision) or self.precision in (200, 250)) else 1

    def add_layer(self, layer, position=0):
        """Test setup helper (not gimpfu API): put a layer into the stack."""
        layer.image = self
        self.layers.insert(position, layer)
        if self.active_layer is None:
            self.active_layer = layer
        return layer

    def state(self):
        """Everything undo must restore: (base type, [(name, offsets, size, opacity, visible, mode, bytes)])."""
        return (self.base_type, [(l.name, l.offsets, l.width, l.height, l.opacity, l.visible, l.mode, l.type,
                                  bytes(l.buffer)) for l in self.layers])

    def undo(self):
        """Undo the last undo group (a test helper: GIMP's Edit > Undo)."""
        snap = self.undo_groups.pop()
        self.base_type, self.layers = snap["base_type"], snap["layers"]
        for layer, (typ, buf) in zip(self.layers, snap["buffers"]):
            layer.type, layer.buffer = typ, buf


class _Gimp(object):
    Layer = Layer
    GroupLayer = GroupLayer
    Channel = Channel
    Image = Image

    def message(self, text):
        _record("message", text)
        MESSAGES.append(text)

    def progress_init(self, text):
        _record("progress_init", text)
        PROGRESS.append((0.0, text))

    def progress_update(self, fraction):
        PROGRESS.append((fraction, None))

    def displays_flush(self):
        _record("displays_flush")


def _convert(layer, to_rgb):
    old_ch = layer.channels
    bps = layer.bytes_per_sample
    alpha = layer.has_alpha
    n = layer.width * layer.height
    src = layer.buffer
    if to_rgb:
        layer.type = RGBA_IMAGE if alpha else RGB_IMAGE
    else:
        layer.type = GRAYA_IMAGE if alpha else GRAY_IMAGE
    new_ch = layer.channels
    out = bytearray(n * new_ch * bps)
    for i in range(n):
        px = src[i * old_ch * bps:(i + 1) * old_ch * bps]
        gray = px[:bps]
        a = px[(old_ch - 1) * bps:] if alpha else b""
        color = gray * 3 if to_rgb else px[:bps]  # the stub's gray from RGB: the red channel
        out[i * new_ch * bps:(i + 1) * new_ch * bps] = color + a
    layer.buffer = out


class _Pdb(object):
    def __getattr__(self, name):
        raise AttributeError("the gimpfu stub has no PDB procedure %s" % name)

    def gimp_image_get_precision(self, image):
        return image.precision

    def gimp_plugin_enable_precision(self):
        _record("enable_precision")
        STATE["precision_enabled"] = True
        return True

    def gimp_image_undo_group_start(self, image):
        _record("undo_group_start", image.ID)
        if image.undo_depth == 0:
            image.undo_groups.append({"base_type": image.base_type, "layers": list(image.layers),
                                      "buffers": [(l.type, copy.copy(l.buffer)) for l in image.layers]})
        image.undo_depth += 1

    def gimp_image_undo_group_end(self, image):
        _record("undo_group_end", image.ID)
        if image.undo_depth <= 0:
            raise RuntimeError("undo group end without start")
        image.undo_depth -= 1

    def gimp_image_convert_rgb(self, image):
        _record("convert_rgb", image.ID)
        if image.base_type == RGB:
            raise RuntimeError("image is already RGB")
        image.base_type = RGB
        for layer in image.layers:
            _convert(layer, True)

    def gimp_image_convert_grayscale(self, image):
        _record("convert_grayscale", image.ID)
        image.base_type = GRAY
        for layer in image.layers:
            _convert(layer, False)

    def _siblings(self, image, item):
        return item.parent.children if item.parent is not None else image.layers

    def gimp_image_get_item_position(self, image, item):
        return self._siblings(image, item).index(item)

    def gimp_image_insert_layer(self, image, layer, parent, position):
        _record("insert_layer", layer.name, position)
        taken = set(l.name for l in image.layers)
        if layer.name in taken:  # GIMP keeps layer names unique: "Name #1", "Name #2", ...
            n = 1
            while "%s #%d" % (layer.name, n) in taken:
                n += 1
            layer.name = "%s #%d" % (layer.name, n)
        layer.parent = parent
        siblings = parent.children if parent is not None else image.layers
        siblings.insert(position, layer)

    def gimp_image_remove_layer(self, image, layer):
        _record("remove_layer", layer.name)
        self._siblings(image, layer).remove(layer)

    def gimp_selection_is_empty(self, image):
        return not any(image.selection.buffer)

    def gimp_progress_set_text(self, text):
        PROGRESS.append((None, text))


gimp = _Gimp()
pdb = _Pdb()
