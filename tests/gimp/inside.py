# Helpers exec'd inside GIMP 3's python-fu-eval batch interpreter by the real-GIMP tests.
# Not a plug-in and not imported on the host: tests/gimp/harness.py prepends
# `exec(open(".../inside.py").read())` to each batch script.
import json
import traceback

import gi

gi.require_version("Gimp", "3.0")
gi.require_version("Gegl", "0.4")
from gi.repository import Gegl, Gimp, Gio  # noqa: E402

PDB = Gimp.get_pdb()
REPORT = {}


def load(path):
    return Gimp.file_load(Gimp.RunMode.NONINTERACTIVE, Gio.File.new_for_path(path))


def fmt(channels, bits=8):
    return "%s %s" % ({1: "Y'", 2: "Y'A", 3: "R'G'B'", 4: "R'G'B'A"}[channels], "u8" if bits == 8 else "u16")


def read(layer, channels=4, bits=8):
    w, h = layer.get_width(), layer.get_height()
    data = layer.get_buffer().get(Gegl.Rectangle.new(0, 0, w, h), 1.0, fmt(channels, bits), Gegl.AbyssPolicy.NONE)
    return bytes(data)


def native(layer):
    """The layer's pixels in its own format (byte-for-byte check of the original)."""
    w, h = layer.get_width(), layer.get_height()
    buf = layer.get_buffer()
    return bytes(buf.get(Gegl.Rectangle.new(0, 0, w, h), 1.0, None, Gegl.AbyssPolicy.NONE))


def write(layer, x, y, w, h, data, channels=4, bits=8):
    buf = layer.get_buffer()
    buf.set(Gegl.Rectangle.new(x, y, w, h), fmt(channels, bits), data)
    buf.flush()
    layer.update(x, y, w, h)


def dump(layer, path, channels=4, bits=8):
    with open(path, "wb") as fh:
        fh.write(read(layer, channels, bits))


def describe(image):
    out = []
    for layer in image.get_layers():
        ok = layer.get_offsets()
        out.append({"name": layer.get_name(), "x": ok[-2], "y": ok[-1], "w": layer.get_width(),
                    "h": layer.get_height(), "mode": layer.get_mode().value_nick, "opacity": layer.get_opacity(),
                    "visible": layer.get_visible(), "alpha": layer.has_alpha(), "id": layer.get_id()})
    return out


def run(name, image, drawables, **args):
    """Run a PDB procedure non-interactively; returns (status nick, error message, values)."""
    proc = PDB.lookup_procedure(name)
    if proc is None:
        return "missing", "no procedure %s" % name, None
    cfg = proc.create_config()
    cfg.set_property("run-mode", Gimp.RunMode.NONINTERACTIVE)
    cfg.set_property("image", image)
    cfg.set_core_object_array("drawables", list(drawables))
    for key, value in args.items():
        key = key.replace("_", "-")
        if key == "reference-file":
            value = Gio.File.new_for_path(value)
        cfg.set_property(key, value)
    values = proc.run(cfg)
    status = values.index(0)
    msg = ""
    if status != Gimp.PDBStatusType.SUCCESS:
        try:
            err = values.index(1)
            msg = str(err)
        except Exception:
            msg = ""
    return status.value_nick, msg, values


def finish(path):
    with open(path, "w") as fh:
        json.dump(REPORT, fh, indent=1)
    print("TINCT-BATCH-DONE")


def guarded(fn, path):
    try:
        fn()
    except Exception:
        REPORT["exception"] = traceback.format_exc()
    finish(path)
