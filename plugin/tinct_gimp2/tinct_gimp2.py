#!/usr/bin/env python2
# -*- coding: utf-8 -*-
"""Tinct for GIMP 2.10 (gimpfu, Python 2.7): Filters > Colors > Tinct.

A thin adapter over tinct_core (installed beside this file). Procedures:

  plug-in-tinct-colorize          Colorize... : image, drawable, instances (0 auto, 1 none,
                                  2 from selection), reference (0 none, 1 layer, 2 file),
                                  reference-layer, reference-file, size (64..2048),
                                  opacity (0..100), device (0 auto, 1 cpu, 2 gpu)
  plug-in-tinct-colorize-again    the last settings, no dialog
  plug-in-tinct-add-hint-layer    a transparent `Tinct hints` layer above the photo
  plug-in-tinct-add-damage-mask   a transparent `Tinct damage` layer above the photo
  plug-in-tinct-detect-damage     Detect Damage: the engine paints what it finds into `Tinct damage`
  plug-in-tinct-interactive       Interactive...: the colorization window (`tinct ui`); Apply gives
                                  `Tinct hints` and `Tinct color` in one undo (points_file: no window)

GIMP 2.10 hands a plug-in 8-bit pixels unless it enables precision: Tinct does that for
16-bit gamma images (16-bit result) and works in 8 bits on the other perceptual precisions;
linear-light images are refused with a message (see plugin_bits).
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
for _p in (HERE, os.path.dirname(HERE)):  # installed: tinct_core beside us; in the repo: plugin/
    if os.path.isdir(os.path.join(_p, "tinct_core")) and _p not in sys.path:
        sys.path.insert(0, _p)
        break

import gimpfu  # noqa: E402  (gimp, pdb, register, main, PF_*, constants)

from tinct_core import roles, settings as tsettings  # noqa: E402
from tinct_core.detect import detect_damage  # noqa: E402
from tinct_core.engine import EngineBridge  # noqa: E402
from tinct_core.errors import TinctUserError  # noqa: E402
from tinct_core.interactive import interactive, run_window, window_command  # noqa: E402
from tinct_core.job import Host, colorize, new_layer_place  # noqa: E402
from tinct_core.pixels import Pixels, convert_channels, to_8bit, to_16bit  # noqa: E402

INSTANCES = ("auto", "none", "selection")
REFERENCES = ("none", "layer", "file")
DEVICES = ("auto", "cpu", "gpu")
MENU = "<Image>/Filters/Colors/Tinct"


def _precision_name(image):
    """GIMP 2.10's precision as text: pygimp hands out the enum's number (150 = 8-bit gamma)."""
    try:
        value = gimpfu.pdb.gimp_image_get_precision(image)
    except Exception:
        return "150"
    return str(getattr(value, "value_nick", None) or value).lower().replace("_", "-")


def plugin_bits(image):
    """The bits per sample Tinct reads and writes for this image in GIMP 2.10.

    A GIMP 2.10 plug-in gets 8-bit perceptual pixels, whatever the image's precision, unless it
    calls gimp_plugin_enable_precision(); Tinct enables it for 16-bit gamma images only (16-bit
    in, 16-bit result) and lets GIMP convert the other perceptual precisions to and from 8 bits.
    Linear-light images are refused: their 8-bit pixels are not the sRGB values the engine
    expects. Precisions (GimpPrecision): 100/150 8-bit linear/gamma, 200/250 16-bit, 300/350
    32-bit, 500/550 half, 600/650 float, 700/750 double.
    """
    name = _precision_name(image)
    linear = "linear" in name or (name.isdigit() and int(name) % 100 == 0)
    if linear:
        raise TinctUserError("Tinct for GIMP 2.10 works on perceptual (gamma) images, and this one is linear "
                             "light. Choose Image > Precision > Perceptual gamma (sRGB) and run Tinct again.")
    if "u16" in name or "16-bit" in name or name == "250":
        return 16
    return 8


def _native_channels(drawable):
    return (3 if getattr(drawable, "is_rgb", True) else 1) + (1 if drawable.has_alpha else 0)


class Gimp2Host(Host):
    """tinct_core's view of one GIMP 2.10 image."""

    def __init__(self, image, drawable):
        self.image = image
        self.drawable = drawable
        self._progress_started = False
        self._precision_enabled = False

    # --- reading -----------------------------------------------------------------
    def image_id(self):
        return getattr(self.image, "ID", id(self.image))

    def base_type(self):
        base = self.image.base_type
        if base == gimpfu.INDEXED:
            return "INDEXED"
        if base == gimpfu.GRAY:
            return "GRAY"
        return "RGB"

    def precision_bits(self):
        bits = plugin_bits(self.image)
        if bits == 16 and not self._precision_enabled:
            gimpfu.pdb.gimp_plugin_enable_precision()  # pixel regions now hand out 16-bit samples
            self._precision_enabled = True
        return bits

    def info(self, layer, parent_visible=True):
        x, y = layer.offsets
        is_group = bool(getattr(layer, "children", None) is not None and
                        isinstance(layer, getattr(gimpfu.gimp, "GroupLayer", ())))
        return roles.LayerInfo(layer, layer.name, parent_visible and layer.visible, x, y, layer.width,
                               layer.height, layer.opacity, layer.has_alpha,
                               getattr(layer.image, "ID", id(layer.image)), is_group)

    def _walk(self, layers, parent_visible, out):
        for layer in layers:
            info = self.info(layer, parent_visible)
            out.append(info)
            if info.is_group:
                self._walk(layer.children, info.visible, out)
        return out

    def layers(self):
        return self._walk(self.image.layers, True, [])

    def selected(self):
        layer = self.drawable
        if layer is None or not isinstance(layer, gimpfu.gimp.Layer):
            layer = self.image.active_layer
        if layer is None:
            return []
        return [self.info(layer)]

    def read_pixels(self, layer, channels, bits):
        drawable = layer.handle
        w, h = drawable.width, drawable.height
        rgn = drawable.get_pixel_rgn(0, 0, w, h, False, False)
        data = rgn[0:w, 0:h]
        native_channels = _native_channels(drawable)
        own_bits = 8 * (rgn.bpp // native_channels)  # what the pixel region hands out (see plugin_bits)
        if own_bits not in (8, 16) or rgn.bpp % native_channels:
            raise TinctUserError("Tinct cannot read the pixels of '%s' (%d bytes per pixel)." % (layer.name, rgn.bpp))
        pix = convert_channels(Pixels(bytes(data), w, h, native_channels, own_bits), channels)
        return _to_bits(pix, bits, layer.name)

    def _read_channel(self, channel, photo):
        # the channel covers the image; cut the photo's area (outside the image counts as unselected)
        iw, ih = channel.width, channel.height
        x0, y0 = max(0, photo.x), max(0, photo.y)
        x1, y1 = min(iw, photo.x + photo.width), min(ih, photo.y + photo.height)
        out = bytearray(photo.width * photo.height)
        if x1 > x0 and y1 > y0:
            rgn = channel.get_pixel_rgn(x0, y0, x1 - x0, y1 - y0, False, False)
            data = bytearray(rgn[x0:x1, y0:y1])
            step = (x1 - x0) * rgn.bpp
            for row in range(y1 - y0):
                line = data[row * step:(row + 1) * step][::rgn.bpp]
                start = (y0 - photo.y + row) * photo.width + (x0 - photo.x)
                out[start:start + len(line)] = line
        return Pixels(bytes(out), photo.width, photo.height, 1, 8)

    def selection_mask(self, photo):
        if gimpfu.pdb.gimp_selection_is_empty(self.image):
            return None
        return self._read_channel(self.image.selection, photo)

    def instance_channels(self, photo):
        return [(c.name, self._read_channel(c, photo)) for c in self.image.channels
                if c.name.startswith(roles.INSTANCE_PREFIX)]

    def load_image_file(self, path):
        if not os.path.isfile(path):
            raise TinctUserError("The reference file '%s' does not exist." % path)
        try:
            img = gimpfu.pdb.gimp_file_load(path, path)
        except Exception as exc:
            raise TinctUserError("GIMP could not open the reference file '%s': %s" % (path, exc))
        try:
            if img.base_type != gimpfu.RGB:
                gimpfu.pdb.gimp_image_convert_rgb(img)
            layer = gimpfu.pdb.gimp_image_flatten(img)
            return Gimp2Host(img, layer).read_pixels(roles.LayerInfo(layer, "reference"), 3, 8)
        finally:
            gimpfu.pdb.gimp_image_delete(img)

    # --- changing ----------------------------------------------------------------
    def undo_group_start(self):
        gimpfu.pdb.gimp_image_undo_group_start(self.image)

    def undo_group_end(self):
        gimpfu.pdb.gimp_image_undo_group_end(self.image)

    def convert_to_rgb(self):
        gimpfu.pdb.gimp_image_convert_rgb(self.image)

    def convert_to_gray(self):
        gimpfu.pdb.gimp_image_convert_grayscale(self.image)

    def convert_to_indexed(self):
        gimpfu.pdb.gimp_image_convert_indexed(self.image, 0, 0, 256, False, False, "")  # no dither, generated

    def new_result_layer(self, photo, name, opacity, visible=True, mode="color"):
        src = photo.handle
        layer = gimpfu.gimp.Layer(self.image, name, photo.width, photo.height, gimpfu.RGBA_IMAGE, float(opacity),
                                  gimpfu.LAYER_MODE_LCH_COLOR if mode == "color" else gimpfu.LAYER_MODE_NORMAL)
        position = gimpfu.pdb.gimp_image_get_item_position(self.image, src)
        gimpfu.pdb.gimp_image_insert_layer(self.image, layer, src.parent, position)
        layer.set_offsets(photo.x, photo.y)
        layer.visible = bool(visible)
        return self.info(layer)

    def write_pixels(self, layer, pixels):
        drawable = layer.handle
        rgn = drawable.get_pixel_rgn(0, 0, pixels.width, pixels.height, True, False)
        pixels = _to_bits(pixels, 8 * (rgn.bpp // pixels.channels), layer.name)
        rgn[0:pixels.width, 0:pixels.height] = pixels.data
        drawable.flush()
        drawable.update(0, 0, pixels.width, pixels.height)

    def new_mask_layer(self, above, name, area, opacity, visible):
        """A Normal layer of the image's kind (RGBA or gray+alpha) over `area`, stacked above `above`."""
        src = above.handle
        ltype = gimpfu.GRAYA_IMAGE if self.base_type() == "GRAY" else gimpfu.RGBA_IMAGE
        layer = gimpfu.gimp.Layer(self.image, name, area.width, area.height, ltype, float(opacity),
                                  gimpfu.LAYER_MODE_NORMAL)
        position = gimpfu.pdb.gimp_image_get_item_position(self.image, src)
        gimpfu.pdb.gimp_image_insert_layer(self.image, layer, src.parent, position)
        layer.set_offsets(area.x, area.y)
        layer.visible = bool(visible)
        return self.info(layer)

    def write_layer_bytes(self, layer, data, channels):
        self.write_pixels(layer, Pixels(bytes(data), layer.width, layer.height, channels, 8))

    def remove_layer(self, layer):
        gimpfu.pdb.gimp_image_remove_layer(self.image, layer.handle)

    def rename_layer(self, layer, name):
        layer.handle.name = name

    def flush(self):
        gimpfu.gimp.displays_flush()

    # --- user --------------------------------------------------------------------
    def progress(self, fraction, text=None):
        if not self._progress_started:
            gimpfu.gimp.progress_init(text or "Tinct")
            self._progress_started = True
        elif text:
            gimpfu.pdb.gimp_progress_set_text(text)
        gimpfu.gimp.progress_update(max(0.0, min(1.0, float(fraction))))

    def message(self, text):
        gimpfu.gimp.message(text)


def _to_bits(pix, bits, name):
    if pix.bits == bits:
        return pix
    if bits == 8:
        return to_8bit(pix)
    if bits == 16:
        return to_16bit(pix)
    raise TinctUserError("Tinct cannot write %d-bit pixels into '%s'." % (bits, name))


def _run(image, drawable, settings, hint_layer=None, reference_layer=None, engine=None):
    host = Gimp2Host(image, drawable)
    try:
        hints = [host.info(hint_layer)] if hint_layer is not None else None
        ref = host.info(reference_layer) if reference_layer is not None else None
        return colorize(host, settings, engine or EngineBridge(), hint_layers=hints, reference_layer=ref)
    except TinctUserError as exc:
        host.message(str(exc))
    except Exception as exc:  # anything unexpected: still a plain message, document unchanged
        host.message("Tinct failed: %s: %s" % (type(exc).__name__, exc))
    return None


def tinct_colorize(image, drawable, instances=0, reference=0, reference_layer=None, reference_file="",
                   size=tsettings.SIZE_DEFAULT, opacity=100.0, device=0):
    try:
        settings = tsettings.Settings(instances=INSTANCES[int(instances)], reference=REFERENCES[int(reference)],
                                      reference_file=reference_file or "", size=size, opacity=opacity,
                                      device=DEVICES[int(device)])
    except (TinctUserError, IndexError, ValueError) as exc:
        gimpfu.gimp.message(str(exc))
        return
    tsettings.save_last(settings)
    _run(image, drawable, settings, reference_layer=reference_layer if settings.reference == "layer" else None)


def tinct_colorize_again(image, drawable):
    _run(image, drawable, tsettings.load_last())


def _add_layer(image, drawable, name):
    host = Gimp2Host(image, drawable)
    try:
        photo, above = new_layer_place(host)
        gimpfu.pdb.gimp_image_undo_group_start(image)
        try:
            if host.base_type() == "GRAY" and name == roles.HINTS_PREFIX:
                gimpfu.pdb.gimp_image_convert_rgb(image)  # hints are colors
            ltype = gimpfu.RGBA_IMAGE if host.base_type() == "RGB" else gimpfu.GRAYA_IMAGE
            layer = gimpfu.gimp.Layer(image, name, photo.width, photo.height, ltype, 100.0,
                                      gimpfu.LAYER_MODE_NORMAL)
            position = gimpfu.pdb.gimp_image_get_item_position(image, above.handle)
            gimpfu.pdb.gimp_image_insert_layer(image, layer, above.handle.parent, position)
            layer.set_offsets(photo.x, photo.y)
            layer.fill(gimpfu.TRANSPARENT_FILL)
            image.active_layer = layer
        finally:
            gimpfu.pdb.gimp_image_undo_group_end(image)
        gimpfu.gimp.displays_flush()
        return layer
    except TinctUserError as exc:
        gimpfu.gimp.message(str(exc))
    return None


def tinct_add_hint_layer(image, drawable):
    return _add_layer(image, drawable, roles.HINTS_PREFIX)


def tinct_add_damage_mask(image, drawable):
    return _add_layer(image, drawable, roles.DAMAGE_NAME)


def tinct_detect_damage(image, drawable, threshold=0.0):
    host = Gimp2Host(image, drawable)
    try:
        outcome = detect_damage(host, EngineBridge(), threshold or None)
        image.active_layer = outcome.layer.handle  # ready for brush and eraser
        gimpfu.gimp.displays_flush()
        return outcome.layer.handle
    except TinctUserError as exc:
        host.message(str(exc))
    except Exception as exc:
        host.message("Tinct failed: %s: %s" % (type(exc).__name__, exc))
    return None


def tinct_interactive(image, drawable, points_file=""):
    host = Gimp2Host(image, drawable)
    engine = EngineBridge()
    try:
        command = window_command(engine.client.start_command())
        interactive(host, tsettings.load_last(), engine, lambda *paths: run_window(command, *paths),
                    points_file or None)
        gimpfu.gimp.displays_flush()
    except TinctUserError as exc:
        host.message(str(exc))
    except Exception as exc:
        host.message("Tinct failed: %s: %s" % (type(exc).__name__, exc))


def register_all():
    author = ("Tinct", "Tinct", "2026")
    gimpfu.register(
        "plug-in-tinct-colorize",
        "Colorize the photo with Tinct",
        "Adds a 'Tinct color' layer (LCh Color mode) above the selected photo layer with colors from the Tinct "
        "engine. Visible layers named 'Tinct hints...' steer the colors; a 'Tinct reference' layer or a file "
        "steers the palette. The photo's pixels are never changed; the run is one undo step.",
        author[0], author[1], author[2], "_Colorize...", "RGB*, GRAY*, INDEXED*",
        [(gimpfu.PF_IMAGE, "image", "Input image", None),
         (gimpfu.PF_DRAWABLE, "drawable", "The photo layer", None),
         (gimpfu.PF_OPTION, "instances", "Instances", 0, ["Auto", "None", "From selection"]),
         (gimpfu.PF_OPTION, "reference", "Reference", 0, ["None", "Layer", "File"]),
         (gimpfu.PF_LAYER, "reference_layer", "Reference layer", None),
         (gimpfu.PF_FILE, "reference_file", "Reference file", ""),
         (gimpfu.PF_SPINNER, "size", "Working resolution (short side, px)", tsettings.SIZE_DEFAULT,
          (tsettings.SIZE_MIN, tsettings.SIZE_MAX, 8)),
         (gimpfu.PF_SLIDER, "opacity", "Opacity of a new result layer", 100, (0, 100, 1)),
         (gimpfu.PF_OPTION, "device", "Device (the engine reports the one it uses)", 0, ["Auto", "CPU", "GPU"])],
        [], tinct_colorize, menu=MENU)
    gimpfu.register(
        "plug-in-tinct-colorize-again", "Colorize again with the last settings",
        "Runs Tinct Colorize with the settings last used in its dialog, without asking.",
        author[0], author[1], author[2], "Colorize _Again", "RGB*, GRAY*, INDEXED*",
        [(gimpfu.PF_IMAGE, "image", "Input image", None),
         (gimpfu.PF_DRAWABLE, "drawable", "The photo layer", None)],
        [], tinct_colorize_again, menu=MENU)
    gimpfu.register(
        "plug-in-tinct-add-hint-layer", "Add a Tinct hint layer",
        "Adds a transparent layer 'Tinct hints' above the photo and makes it active: paint dots of the colors "
        "you want, then Colorize again.",
        author[0], author[1], author[2], "Add _Hint Layer", "RGB*, GRAY*, INDEXED*",
        [(gimpfu.PF_IMAGE, "image", "Input image", None),
         (gimpfu.PF_DRAWABLE, "drawable", "The photo layer", None)],
        [], tinct_add_hint_layer, menu=MENU)
    gimpfu.register(
        "plug-in-tinct-add-damage-mask", "Add a Tinct damage mask",
        "Adds a transparent layer 'Tinct damage' above the photo: paint over scratches and tears for the "
        "restoration feature.",
        author[0], author[1], author[2], "Add _Damage Mask", "RGB*, GRAY*, INDEXED*",
        [(gimpfu.PF_IMAGE, "image", "Input image", None),
         (gimpfu.PF_DRAWABLE, "drawable", "The photo layer", None)],
        [], tinct_add_damage_mask, menu=MENU)
    gimpfu.register(
        "plug-in-tinct-detect-damage", "Find scratches, cracks, dust and tears",
        "The Tinct engine looks for damage on the photo and paints what it finds into the 'Tinct damage' layer "
        "(added when missing; what you painted there stays), in one undo step. Correct it, then Colorize Again.",
        author[0], author[1], author[2], "De_tect Damage", "RGB*, GRAY*",
        [(gimpfu.PF_IMAGE, "image", "Input image", None),
         (gimpfu.PF_DRAWABLE, "drawable", "The photo layer", None),
         (gimpfu.PF_FLOAT, "threshold", "Threshold (0 = the model's default)", 0.0)],
        [], tinct_detect_damage, menu=MENU)
    gimpfu.register(
        "plug-in-tinct-interactive", "Colorize interactively in the Tinct window",
        "Opens the photo with its visible 'Tinct hints' dots in the Tinct window: place color points, pick "
        "suggested colors, see the photo change at once. Apply brings the points back as the 'Tinct hints' layer "
        "and the colors as the 'Tinct color' layer, in one undo step; Cancel leaves the image as it was. For "
        "scripts, points_file (JSON [{x, y, rgb: [r, g, b]}]) applies those points without the window.",
        author[0], author[1], author[2], "_Interactive...", "RGB*, GRAY*",
        [(gimpfu.PF_IMAGE, "image", "Input image", None),
         (gimpfu.PF_DRAWABLE, "drawable", "The photo layer", None),
         (gimpfu.PF_STRING, "points_file", "Points to apply without the window (empty: the window)", "")],
        [], tinct_interactive, menu=MENU)


register_all()
gimpfu.main()
