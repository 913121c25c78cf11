#!/usr/bin/env python3
# -*- coding: utf-8 -*-
"""Tinct for GIMP 3: Filters > Colors > Tinct.

A thin adapter over tinct_core (installed beside this file): it describes the
image to the core through GimpHost and registers the procedures

  plug-in-tinct-colorize          Colorize... (dialog; non-interactive for scripts)
  plug-in-tinct-colorize-again    Colorize again with the last settings, no dialog
  plug-in-tinct-add-hint-layer    a transparent `Tinct hints` layer above the photo
  plug-in-tinct-add-damage-mask   a transparent `Tinct damage` layer above the photo
  plug-in-tinct-detect-damage     Detect Damage: the engine paints what it finds into `Tinct damage`
  plug-in-tinct-interactive       Interactive...: the colorization window (`tinct ui`); Apply gives
                                  `Tinct hints` and `Tinct color` in one undo (points-file: no window)

Script use (python-fu):
  proc = Gimp.get_pdb().lookup_procedure("plug-in-tinct-colorize")
  cfg = proc.create_config()
  cfg.set_property("run-mode", Gimp.RunMode.NONINTERACTIVE)
  cfg.set_property("image", image)
  cfg.set_core_object_array("drawables", [photo_layer])
  cfg.set_property("size", 256)                  # other arguments: see add_arguments()
  values = proc.run(cfg)                         # values.index(0): Gimp.PDBStatusType
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
for _p in (HERE, os.path.dirname(HERE)):  # installed: tinct_core beside us; in the repo: plugin/
    if os.path.isdir(os.path.join(_p, "tinct_core")) and _p not in sys.path:
        sys.path.insert(0, _p)
        break

import gi  # noqa: E402

gi.require_version("Gimp", "3.0")
gi.require_version("Gegl", "0.4")
from gi.repository import Gegl, Gimp, Gio, GLib, GObject  # noqa: E402

from tinct_core import roles, settings as tsettings  # noqa: E402
from tinct_core.detect import detect_damage  # noqa: E402
from tinct_core.engine import EngineBridge  # noqa: E402
from tinct_core.errors import TinctUserError  # noqa: E402
from tinct_core.interactive import interactive, run_window, window_command  # noqa: E402
from tinct_core.job import Host, IndexedImage, colorize, new_layer_place  # noqa: E402
from tinct_core.pixels import Pixels  # noqa: E402

PROC_COLORIZE = "plug-in-tinct-colorize"
PROC_AGAIN = "plug-in-tinct-colorize-again"
PROC_HINTS = "plug-in-tinct-add-hint-layer"
PROC_DAMAGE = "plug-in-tinct-add-damage-mask"
PROC_DETECT = "plug-in-tinct-detect-damage"
PROC_INTERACTIVE = "plug-in-tinct-interactive"
MENU = "<Image>/Filters/Colors/Tinct"

_FORMATS = {1: "Y'", 2: "Y'A", 3: "R'G'B'", 4: "R'G'B'A"}


def _fmt(channels, bits):
    return "%s %s" % (_FORMATS[channels], "u8" if bits == 8 else "u16")


def _bytes(data):
    if isinstance(data, (bytes, bytearray)):
        return bytes(data)
    return bytes(bytearray(data))


class GimpHost(Host):
    """tinct_core's view of one GIMP 3 image."""

    def __init__(self, image, drawables, interactive):
        self.image = image
        self.drawables = [d for d in (drawables or []) if isinstance(d, Gimp.Layer)]
        self.interactive = interactive
        self._progress_started = False

    # --- reading -----------------------------------------------------------------
    def image_id(self):
        return self.image.get_id()

    def base_type(self):
        base = self.image.get_base_type()
        if base == Gimp.ImageBaseType.INDEXED:
            return "INDEXED"
        if base == Gimp.ImageBaseType.GRAY:
            return "GRAY"
        return "RGB"

    def precision_bits(self):
        name = self.image.get_precision().value_nick.upper().replace("-", "_")
        return 8 if name.startswith("U8") else 16

    def info(self, layer, parent_visible=True):
        ok_x = layer.get_offsets()
        x, y = ok_x[-2], ok_x[-1]
        return roles.LayerInfo(layer, layer.get_name(), parent_visible and layer.get_visible(),
                               x, y, layer.get_width(), layer.get_height(), layer.get_opacity(),
                               layer.has_alpha(), layer.get_image().get_id(), layer.is_group())

    def _walk(self, layers, parent_visible, out):
        for layer in layers:
            info = self.info(layer, parent_visible)
            out.append(info)
            if info.is_group:
                self._walk(layer.get_children(), info.visible, out)
        return out

    def layers(self):
        return self._walk(self.image.get_layers(), True, [])

    def selected(self):
        # GIMP 3 passes the selected drawables; none means no layer is selected.
        return [self.info(d) for d in self.drawables]

    def read_pixels(self, layer, channels, bits):
        drawable = layer.handle
        w, h = drawable.get_width(), drawable.get_height()
        buf = drawable.get_buffer()
        data = buf.get(Gegl.Rectangle.new(0, 0, w, h), 1.0, _fmt(channels, bits), Gegl.AbyssPolicy.NONE)
        return Pixels(_bytes(data), w, h, channels, bits)

    def _read_channel(self, channel, photo):
        buf = channel.get_buffer()
        data = buf.get(Gegl.Rectangle.new(photo.x, photo.y, photo.width, photo.height), 1.0, "Y u8",
                       Gegl.AbyssPolicy.NONE)
        return Pixels(_bytes(data), photo.width, photo.height, 1, 8)

    def selection_mask(self, photo):
        if Gimp.Selection.is_empty(self.image):
            return None
        return self._read_channel(self.image.get_selection(), photo)

    def instance_channels(self, photo):
        return [(c.get_name(), self._read_channel(c, photo)) for c in self.image.get_channels()
                if c.get_name().startswith(roles.INSTANCE_PREFIX)]

    def load_image_file(self, path):
        if not os.path.isfile(path):
            raise TinctUserError("The reference file '%s' does not exist." % path)
        try:
            img = Gimp.file_load(Gimp.RunMode.NONINTERACTIVE, Gio.File.new_for_path(path))
        except GLib.Error as exc:
            raise TinctUserError("GIMP could not open the reference file '%s': %s" % (path, exc.message))
        if img is None:
            raise TinctUserError("GIMP could not open the reference file '%s'." % path)
        try:
            if img.get_base_type() != Gimp.ImageBaseType.RGB:
                img.convert_rgb()
            layer = img.flatten()
            return self.read_pixels(roles.LayerInfo(layer, "reference"), 3, 8)
        finally:
            img.delete()

    # --- changing ----------------------------------------------------------------
    def undo_group_start(self):
        self.image.undo_group_start()

    def undo_group_end(self):
        self.image.undo_group_end()

    def convert_to_rgb(self):
        if not self.image.convert_rgb():
            raise TinctUserError("GIMP could not convert the image to RGB.")

    def convert_to_gray(self):
        self.image.convert_grayscale()

    def convert_to_indexed(self):
        self.image.convert_indexed(Gimp.ConvertDitherType.NONE, Gimp.ConvertPaletteType.GENERATE, 256,
                                   False, False, "")

    def new_result_layer(self, photo, name, opacity, visible=True, mode="color"):
        src = photo.handle
        layer = Gimp.Layer.new(self.image, name, photo.width, photo.height, Gimp.ImageType.RGBA_IMAGE,
                               float(opacity), Gimp.LayerMode.LCH_COLOR if mode == "color" else Gimp.LayerMode.NORMAL)
        self.image.insert_layer(layer, src.get_parent(), self.image.get_item_position(src))
        layer.set_offsets(photo.x, photo.y)
        layer.set_visible(bool(visible))
        return self.info(layer)

    def write_pixels(self, layer, pixels):
        drawable = layer.handle
        buf = drawable.get_buffer()
        buf.set(Gegl.Rectangle.new(0, 0, pixels.width, pixels.height), _fmt(pixels.channels, pixels.bits),
                pixels.data)
        buf.flush()
        drawable.update(0, 0, pixels.width, pixels.height)

    def new_mask_layer(self, above, name, area, opacity, visible):
        """A Normal layer of the image's kind (RGBA or gray+alpha) over `area`, stacked above `above`."""
        src = above.handle
        ltype = Gimp.ImageType.GRAYA_IMAGE if self.base_type() == "GRAY" else Gimp.ImageType.RGBA_IMAGE
        layer = Gimp.Layer.new(self.image, name, area.width, area.height, ltype, float(opacity),
                               Gimp.LayerMode.NORMAL)
        self.image.insert_layer(layer, src.get_parent(), self.image.get_item_position(src))
        layer.set_offsets(area.x, area.y)
        layer.set_visible(bool(visible))
        return self.info(layer)

    def write_layer_bytes(self, layer, data, channels):
        self.write_pixels(layer, Pixels(bytes(data), layer.width, layer.height, channels, 8))

    def remove_layer(self, layer):
        self.image.remove_layer(layer.handle)

    def rename_layer(self, layer, name):
        layer.handle.set_name(name)

    def flush(self):
        Gimp.displays_flush()

    # --- user --------------------------------------------------------------------
    def progress(self, fraction, text=None):
        if not self._progress_started:
            Gimp.progress_init(text or "Tinct")
            self._progress_started = True
        elif text:
            Gimp.progress_set_text(text)
        Gimp.progress_update(max(0.0, min(1.0, float(fraction))))

    def message(self, text):
        Gimp.message(text)


def _choice(*items):
    choice = Gimp.Choice.new()
    for i, (nick, label, help_text) in enumerate(items):
        choice.add(nick, i, label, help_text)
    return choice


def add_colorize_arguments(procedure):
    rw = GObject.ParamFlags.READWRITE
    procedure.add_choice_argument(
        "instances", "_Instances", "How people and objects are found: auto (the engine detects them), "
        "none, or selection (the active selection and channels named 'Tinct instance ...')",
        _choice(("auto", "Auto", "The engine detects people and objects"),
                ("none", "None", "Colorize the photo as a whole"),
                ("selection", "From selection", "The selection and 'Tinct instance' channels")), "auto", rw)
    procedure.add_choice_argument(
        "reference", "Refere_nce", "A color reference that steers the palette: none, layer (the layer named "
        "'Tinct reference' or reference-layer), or file (reference-file)",
        _choice(("none", "None", "No reference"),
                ("layer", "Layer", "The 'Tinct reference' layer"),
                ("file", "File", "An image file")), "none", rw)
    procedure.add_layer_argument("reference-layer", "Reference la_yer",
                                 "The reference layer when reference=layer (default: the layer named "
                                 "'Tinct reference')", True, rw)
    procedure.add_file_argument("reference-file", "Reference _file", "The reference image when reference=file",
                                Gimp.FileChooserAction.OPEN, True, None, rw)
    procedure.add_int_argument("size", "_Working resolution", "The short side, in pixels, the network works at "
                               "(multiple of 8); colors are upsampled to the photo's full size",
                               tsettings.SIZE_MIN, tsettings.SIZE_MAX, tsettings.SIZE_DEFAULT, rw)
    procedure.add_double_argument("opacity", "O_pacity", "Opacity of a new 'Tinct color' layer (0-100); a "
                                  "re-run keeps the opacity you set", 0.0, 100.0, 100.0, rw)
    procedure.add_choice_argument(
        "device", "_Device", "Where the engine runs the network: auto, cpu or gpu",
        _choice(("auto", "Auto", "GPU when the engine has one"),
                ("cpu", "CPU", "Always the CPU"),
                ("gpu", "GPU", "The GPU (CUDA)")), "auto", rw)
    procedure.add_layer_argument("hint-layer", "_Hint layer", "Use only this hint layer (default: every visible "
                                 "layer whose name starts with 'Tinct hints')", True, rw)


def settings_from_config(config):
    ref_file = config.get_property("reference-file")
    return tsettings.Settings(
        instances=config.get_property("instances"), reference=config.get_property("reference"),
        reference_file=ref_file.get_path() if ref_file is not None else "",
        size=config.get_property("size"), opacity=config.get_property("opacity"),
        device=config.get_property("device"))


def _fail(procedure, run_mode, text, status=Gimp.PDBStatusType.EXECUTION_ERROR):
    """A failure: interactively one plain message (and CANCEL, so GIMP adds no second error dialog);
    for scripts the error status with the message."""
    if run_mode == Gimp.RunMode.INTERACTIVE:
        Gimp.message(text)
        return procedure.new_return_values(Gimp.PDBStatusType.CANCEL, GLib.Error())
    return procedure.new_return_values(status, GLib.Error.new_literal(GLib.quark_from_string("tinct"), text, 0))


def _offer_rgb(text):
    """Ask whether to convert an indexed image to RGB (done inside the run's undo group)."""
    gi.require_version("GimpUi", "3.0")
    gi.require_version("Gtk", "3.0")
    from gi.repository import GimpUi, Gtk
    GimpUi.init("tinct")
    dialog = Gtk.MessageDialog(message_type=Gtk.MessageType.QUESTION, buttons=Gtk.ButtonsType.NONE,
                               text="Convert this indexed image to RGB?")
    dialog.set_title("Tinct: indexed image")
    dialog.format_secondary_text(text.replace("Convert it with Image > Mode > RGB and run Tinct again.",
                                              "Tinct can convert it to RGB now, as part of this run (one undo)."))
    dialog.add_button("_Cancel", Gtk.ResponseType.CANCEL)
    dialog.add_button("Con_vert to RGB", Gtk.ResponseType.OK)
    dialog.set_default_response(Gtk.ResponseType.OK)
    answer = dialog.run()
    dialog.destroy()
    return answer == Gtk.ResponseType.OK


def _show_dialog(procedure, config, engine):
    gi.require_version("GimpUi", "3.0")
    from gi.repository import GimpUi
    GimpUi.init("tinct")
    dialog = GimpUi.ProcedureDialog.new(procedure, config, "Tinct: Colorize")
    device = engine.device()
    text = ("The engine runs on the %s." % ("GPU" if device in ("cuda", "gpu") else "CPU")
            if device else "The engine is not running yet; it starts when you colorize.")
    try:
        dialog.get_label("engine-device", text, False, False)
        dialog.fill(["engine-device", "instances", "reference", "reference-layer", "reference-file", "size",
                     "opacity", "device"])
    except Exception:
        dialog.fill(["instances", "reference", "reference-layer", "reference-file", "size", "opacity", "device"])
    ok = dialog.run()
    dialog.destroy()
    return ok


class Tinct(Gimp.PlugIn):
    def do_set_i18n(self, name):
        return False

    def do_query_procedures(self):
        return [PROC_COLORIZE, PROC_AGAIN, PROC_INTERACTIVE, PROC_HINTS, PROC_DAMAGE, PROC_DETECT]

    def do_create_procedure(self, name):
        if name == PROC_COLORIZE:
            proc = Gimp.ImageProcedure.new(self, name, Gimp.PDBProcType.PLUGIN, self.run_colorize, None)
            proc.set_menu_label("_Colorize...")
            proc.set_documentation(
                "Colorize the photo with Tinct",
                "Adds a 'Tinct color' layer (LCh Color mode) above the selected photo layer with colors from the "
                "Tinct engine. Visible layers named 'Tinct hints...' steer the colors; a 'Tinct reference' layer or "
                "file steers the palette. The photo's pixels are never changed; the run is one undo step. "
                "Returns the result layer.", name)
            add_colorize_arguments(proc)
            proc.add_layer_return_value("result-layer", "Result layer", "The 'Tinct color' layer", True,
                                        GObject.ParamFlags.READWRITE)
        elif name == PROC_AGAIN:
            proc = Gimp.ImageProcedure.new(self, name, Gimp.PDBProcType.PLUGIN, self.run_again, None)
            proc.set_menu_label("Colorize _Again")
            proc.set_documentation("Colorize again with the last settings",
                                   "Runs Tinct Colorize with the settings last used in its dialog, without "
                                   "asking.", name)
        elif name == PROC_HINTS:
            proc = Gimp.ImageProcedure.new(self, name, Gimp.PDBProcType.PLUGIN, self.run_add_layer, None)
            proc.set_menu_label("Add _Hint Layer")
            proc.set_documentation("Add a Tinct hint layer",
                                   "Adds a transparent layer 'Tinct hints' above the photo and selects it: paint "
                                   "dots of the colors you want, then Colorize again.", name)
        elif name == PROC_INTERACTIVE:
            proc = Gimp.ImageProcedure.new(self, name, Gimp.PDBProcType.PLUGIN, self.run_interactive, None)
            proc.set_menu_label("_Interactive...")
            proc.set_documentation(
                "Colorize interactively in the Tinct window",
                "Opens the photo with its visible 'Tinct hints' dots in the Tinct window: place color points, "
                "pick suggested colors, see the photo change at once. Apply brings the points back as the "
                "'Tinct hints' layer and the colors as the 'Tinct color' layer, in one undo step; Cancel leaves "
                "the image as it was. For scripts, points-file (JSON [{\"x\", \"y\", \"rgb\": [r, g, b]}]) "
                "applies those points without showing the window.", name)
            proc.add_string_argument("points-file", "_Points file", "JSON points to apply without the window "
                                     "(empty: show the window)", "", GObject.ParamFlags.READWRITE)
        elif name == PROC_DETECT:
            proc = Gimp.ImageProcedure.new(self, name, Gimp.PDBProcType.PLUGIN, self.run_detect, None)
            proc.set_menu_label("De_tect Damage")
            proc.set_documentation("Find scratches, cracks, dust and tears",
                                   "The Tinct engine looks for damage on the photo and paints what it finds into "
                                   "the 'Tinct damage' layer (added when missing; what you painted there stays), in "
                                   "one undo step. Correct it with brush and eraser, then Colorize Again to "
                                   "restore it.", name)
            proc.add_double_argument("threshold", "_Threshold", "Damage probability from which a pixel is flagged "
                                     "(0 = the model's default; lower finds more)", 0.0, 0.99, 0.0,
                                     GObject.ParamFlags.READWRITE)
        else:
            proc = Gimp.ImageProcedure.new(self, name, Gimp.PDBProcType.PLUGIN, self.run_add_layer, None)
            proc.set_menu_label("Add _Damage Mask")
            proc.set_documentation("Add a Tinct damage mask",
                                   "Adds a transparent layer 'Tinct damage' above the photo: paint over scratches "
                                   "and tears for the restoration feature.", name)
        proc.set_image_types("*")
        proc.set_sensitivity_mask(Gimp.ProcedureSensitivityMask.DRAWABLE | Gimp.ProcedureSensitivityMask.DRAWABLES
                                  | Gimp.ProcedureSensitivityMask.NO_DRAWABLES)
        proc.add_menu_path(MENU)
        proc.set_attribution("Tinct", "Tinct", "2026")
        return proc

    # --- Colorize ------------------------------------------------------------------
    def _colorize(self, procedure, run_mode, image, drawables, settings, hint_layer=None, ref_layer=None,
                  engine=None):
        host = GimpHost(image, drawables, run_mode == Gimp.RunMode.INTERACTIVE)
        engine = engine or EngineBridge()
        try:
            hints = [host.info(hint_layer)] if hint_layer is not None else None
            ref = host.info(ref_layer) if ref_layer is not None else None
            try:
                outcome = colorize(host, settings, engine, hint_layers=hints, reference_layer=ref)
            except IndexedImage as exc:
                if run_mode != Gimp.RunMode.INTERACTIVE or not _offer_rgb(str(exc)):
                    raise
                outcome = colorize(host, settings, engine, hint_layers=hints, reference_layer=ref,
                                   convert_indexed=True)
        except TinctUserError as exc:
            return _fail(procedure, run_mode, str(exc))
        except Exception as exc:  # anything unexpected: still a plain message, document unchanged
            return _fail(procedure, run_mode, "Tinct failed: %s: %s" % (type(exc).__name__, exc))
        values = procedure.new_return_values(Gimp.PDBStatusType.SUCCESS, GLib.Error())
        try:
            values.index(1)
            values.remove(1)
            values.insert(1, GObject.Value(Gimp.Layer, outcome.result_layer.handle))
        except Exception:
            pass
        return values

    def run_colorize(self, procedure, run_mode, image, drawables, config, run_data):
        engine = EngineBridge()
        if run_mode == Gimp.RunMode.INTERACTIVE:
            if not _show_dialog(procedure, config, engine):
                return procedure.new_return_values(Gimp.PDBStatusType.CANCEL, GLib.Error())
        try:
            settings = settings_from_config(config)
        except TinctUserError as exc:
            return _fail(procedure, run_mode, str(exc), Gimp.PDBStatusType.CALLING_ERROR)
        if run_mode == Gimp.RunMode.INTERACTIVE:
            tsettings.save_last(settings)
        return self._colorize(procedure, run_mode, image, drawables, settings,
                              config.get_property("hint-layer"), config.get_property("reference-layer"), engine)

    def run_again(self, procedure, run_mode, image, drawables, config, run_data):
        return self._colorize(procedure, run_mode, image, drawables, tsettings.load_last())

    # --- Detect Damage ----------------------------------------------------------------------
    def run_detect(self, procedure, run_mode, image, drawables, config, run_data):
        host = GimpHost(image, drawables, run_mode == Gimp.RunMode.INTERACTIVE)
        threshold = config.get_property("threshold") or None
        try:
            outcome = detect_damage(host, EngineBridge(), threshold)
            image.set_selected_layers([outcome.layer.handle])  # ready for brush and eraser
            Gimp.displays_flush()
        except TinctUserError as exc:
            return _fail(procedure, run_mode, str(exc))
        except Exception as exc:
            return _fail(procedure, run_mode, "Tinct failed: %s: %s" % (type(exc).__name__, exc))
        if run_mode == Gimp.RunMode.INTERACTIVE and not outcome.found:
            Gimp.message("Tinct found no damage on this photo.")
        return procedure.new_return_values(Gimp.PDBStatusType.SUCCESS, GLib.Error())

    # --- Interactive... ------------------------------------------------------------------
    def run_interactive(self, procedure, run_mode, image, drawables, config, run_data):
        host = GimpHost(image, drawables, run_mode == Gimp.RunMode.INTERACTIVE)
        engine = EngineBridge()
        try:
            command = window_command(engine.client.start_command())
            layer = interactive(host, tsettings.load_last(), engine, lambda *paths: run_window(command, *paths),
                                config.get_property("points-file") or None)
        except TinctUserError as exc:
            return _fail(procedure, run_mode, str(exc))
        except Exception as exc:
            return _fail(procedure, run_mode, "Tinct failed: %s: %s" % (type(exc).__name__, exc))
        if layer is None:
            return procedure.new_return_values(Gimp.PDBStatusType.CANCEL, GLib.Error())
        return procedure.new_return_values(Gimp.PDBStatusType.SUCCESS, GLib.Error())

    # --- Add Hint Layer / Add Damage Mask -------------------------------------------------
    def run_add_layer(self, procedure, run_mode, image, drawables, config, run_data):
        name = roles.HINTS_PREFIX if procedure.get_name() == PROC_HINTS else roles.DAMAGE_NAME
        host = GimpHost(image, drawables, run_mode == Gimp.RunMode.INTERACTIVE)
        try:
            photo, above = new_layer_place(host)
            src = above.handle
            image.undo_group_start()
            try:
                if host.base_type() == "GRAY" and name == roles.HINTS_PREFIX:
                    image.convert_rgb()  # hints are colors
                ltype = Gimp.ImageType.RGBA_IMAGE if host.base_type() == "RGB" else Gimp.ImageType.GRAYA_IMAGE
                layer = Gimp.Layer.new(image, name, photo.width, photo.height, ltype, 100.0,
                                       Gimp.LayerMode.NORMAL)
                image.insert_layer(layer, src.get_parent(), image.get_item_position(src))
                layer.set_offsets(photo.x, photo.y)
                layer.fill(Gimp.FillType.TRANSPARENT)
                image.set_selected_layers([layer])
            finally:
                image.undo_group_end()
            Gimp.displays_flush()
        except TinctUserError as exc:
            return _fail(procedure, run_mode, str(exc))
        except Exception as exc:
            return _fail(procedure, run_mode, "Tinct failed: %s: %s" % (type(exc).__name__, exc))
        return procedure.new_return_values(Gimp.PDBStatusType.SUCCESS, GLib.Error())


Gimp.main(Tinct.__gtype__, sys.argv)
