"""The GIMP 3 plug-in in real GIMP 3 (Debian trixie chroot), against the real engine and model.

The plug-in is installed into a fresh GIMP profile by the installer (`python -m installer
--gimp-dir`), the engine (`python -m engine serve`) runs on the host as the session's user,
and GIMP is driven with `gimp-console-3.0 -i --batch-interpreter=python-fu-eval -b -` (the
dialog and undo tests run `gimp-3.0` on Xvfb and press keys with xdotool). Each GIMP launch
costs seconds, so one batch script covers several cases; the module shares one session.
The model is being retrained, so colors are compared by relation (closer to the hint than
the automatic run was), never by value.
Run: `python3 -m pytest -q -m gimp tests/gimp` (root; builds the chroot on first use).
"""

import json
import os
import signal
import threading
import time

import numpy as np
import pytest
from PIL import Image

from tests.gimp import gui, harness
from tests.gimp.real_engine import RealEngine, engine_json, process_root, wait_gone
from tests.gimp.relay import Relay, load_request

pytestmark = [pytest.mark.gimp, pytest.mark.slow]

EXAMPLES = os.path.join(harness.ROOT, "examples")


@pytest.fixture(scope="module")
def gimp():
    reason = harness.unavailable_reason()
    if reason:
        pytest.skip(reason)
    with harness.GimpSession() as session:
        harness.install_plugin(session)
        gray = Image.open(os.path.join(EXAMPLES, "great_wall_bw.png")).convert("L")
        gray.convert("RGB").save(session.path("photo.png"))
        gray.save(session.path("gray.png"))
        Image.new("RGB", (40, 30), (30, 90, 200)).save(session.path("ref.png"))
        engine = RealEngine(session)
        engine.start()
        session.engine = engine
        try:
            yield session
        finally:
            engine.stop()


@pytest.fixture
def engine(gimp):
    """The session's engine, started on the host if none runs (a test may have stopped it)."""
    if not gimp.engine.running():
        gimp.engine.start()
    return gimp.engine


def _check(rep, out):
    assert rep["_done"] and "exception" not in rep, rep.get("exception", out[-3000:])


def _raw(path, w, h, channels=4, dtype=np.uint8):
    return np.frombuffer(open(path, "rb").read(), dtype).reshape(h, w, channels)


def _hue_dist(rgb, target):
    """Angle between the chroma directions (a simple opponent space) of rgb pixels and a target color."""
    def opp(c):
        c = np.asarray(c, np.float64)
        return np.stack([c[..., 0] - c[..., 1], (c[..., 0] + c[..., 1]) / 2 - c[..., 2]], -1)
    a, b = opp(rgb), opp(np.array(target, np.float64))
    cos = (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b) + 1e-9)
    return np.arccos(np.clip(cos, -1, 1))


def _names(layers):
    return [l["name"] for l in layers]


# --------------------------------------------------------------------------------------------
# Colorize, hints, re-run, Add Hint Layer / Add Damage Mask

MAIN = r'''
img = load(WORK + "/photo.png")
photo = img.get_layers()[0]
before = native(photo)
REPORT["procs"] = sorted(PDB.query_procedures("plug-in-tinct.*", "", "", "", "", "", "", ""))
colorize = PDB.lookup_procedure("plug-in-tinct-colorize")
REPORT["menu"] = list(colorize.get_menu_paths())
REPORT["args"] = [p.name for p in colorize.get_arguments()]
st, msg, vals = run("plug-in-tinct-colorize", img, [photo], size=256)
REPORT["first"] = {"status": st, "msg": msg, "layers": describe(img), "same": native(photo) == before,
                   "returned": vals.index(1).get_name() if st == "success" and vals.index(1) else None,
                   "precision": img.get_precision().value_nick}
res = img.get_layers()[0]
dump(res, WORK + "/first.raw")
res.set_opacity(60.0)
st, msg, _ = run("plug-in-tinct-add-hint-layer", img, [photo])
hints = [l for l in img.get_layers() if l.get_name().startswith("Tinct hints")][0]
REPORT["addhint"] = {"status": st, "msg": msg, "layers": describe(img),
                     "selected": [l.get_name() for l in img.get_selected_layers()],
                     "empty": set(read(hints)[3::4]) == {0}}
# a 5x5 saturated blue dot at (DOT_X, DOT_Y)
write(hints, DOT_X - 2, DOT_Y - 2, 5, 5, bytes([20, 60, 255, 255]) * 25)
# run with the hint layer selected: the photo is the layer below it
st, msg, _ = run("plug-in-tinct-colorize", img, [hints], size=256)
REPORT["second"] = {"status": st, "msg": msg, "layers": describe(img), "same": native(photo) == before}
dump([l for l in img.get_layers() if l.get_name() == "Tinct color"][0], WORK + "/second.raw")
st, msg, _ = run("plug-in-tinct-add-damage-mask", img, [photo])
REPORT["damage"] = {"status": st, "msg": msg, "layers": describe(img),
                    "selected": [l.get_name() for l in img.get_selected_layers()]}
'''

DOT_X, DOT_Y = 160, 170


@pytest.fixture(scope="module")
def main_run(gimp):
    if not gimp.engine.running():
        gimp.engine.start()
    rep, out, took = gimp.batch("DOT_X, DOT_Y = %d, %d\n" % (DOT_X, DOT_Y) + MAIN)
    print("main batch: %.1fs" % took)
    _check(rep, out)
    return rep


def test_installed_by_the_installer_and_registered(gimp, main_run):
    assert gimp.installed_by == "installer"
    assert main_run["procs"] == ["plug-in-tinct-add-damage-mask", "plug-in-tinct-add-hint-layer",
                                 "plug-in-tinct-colorize", "plug-in-tinct-colorize-again",
                                 "plug-in-tinct-detect-damage", "plug-in-tinct-interactive"]
    assert main_run["menu"] == ["<Image>/Filters/Colors/Tinct"]
    assert main_run["args"][3:] == ["instances", "reference", "reference-layer", "reference-file", "size",
                                    "opacity", "device", "hint-layer"]


def test_colorize_real_photo(gimp, main_run):
    first = main_run["first"]
    assert first["status"] == "success", first["msg"]
    assert _names(first["layers"]) == ["Tinct color", "Background"]
    top, photo = first["layers"]
    assert top["mode"] == "lch-color" and top["opacity"] == 100.0 and top["visible"]
    assert (top["x"], top["y"], top["w"], top["h"]) == (photo["x"], photo["y"], photo["w"], photo["h"])
    assert first["returned"] == "Tinct color"
    rgba = _raw(gimp.path("first.raw"), photo["w"], photo["h"])
    assert (rgba[..., 3] == 255).all()
    spread = rgba[..., :3].astype(int).max(-1) - rgba[..., :3].astype(int).min(-1)
    assert spread.mean() > 3, "the result has no color"
    # the engine keeps the photo's lightness: the result's luma follows the photo's gray
    gray = np.asarray(Image.open(gimp.path("photo.png")).convert("L"), np.float64)
    luma = rgba[..., :3].astype(np.float64) @ [0.299, 0.587, 0.114]
    assert np.corrcoef(gray.ravel(), luma.ravel())[0, 1] > 0.9


def test_original_pixels_unchanged_byte_for_byte(main_run):
    assert main_run["first"]["same"] and main_run["second"]["same"]


def test_hint_moves_color_toward_the_dot_and_rerun_replaces(gimp, main_run):
    add = main_run["addhint"]
    assert add["status"] == "success", add["msg"]
    assert _names(add["layers"]) == ["Tinct hints", "Tinct color", "Background"]
    assert add["selected"] == ["Tinct hints"] and add["empty"]
    hint = add["layers"][0]
    assert (hint["w"], hint["h"], hint["alpha"]) == (320, 240, True)

    second = main_run["second"]
    assert second["status"] == "success", second["msg"]
    assert _names(second["layers"]) == ["Tinct hints", "Tinct color", "Background"]
    color = second["layers"][1]
    assert color["opacity"] == pytest.approx(60.0), "a re-run must keep the user's opacity"
    assert color["mode"] == "lch-color"
    w, h = color["w"], color["h"]
    win = np.s_[DOT_Y - 6:DOT_Y + 7, DOT_X - 6:DOT_X + 7, :3]
    auto = _raw(gimp.path("first.raw"), w, h)[win]
    hinted = _raw(gimp.path("second.raw"), w, h)[win]
    target = (20, 60, 255)
    before, after = _hue_dist(auto, target).mean(), _hue_dist(hinted, target).mean()
    print("hue distance to the hint near the dot: auto %.2f rad, with the hint %.2f rad" % (before, after))
    assert after < before - 0.2, "the color near the dot did not move toward the hint"


def test_add_damage_mask(main_run):
    dm = main_run["damage"]
    assert dm["status"] == "success", dm["msg"]
    assert _names(dm["layers"]) == ["Tinct hints", "Tinct damage", "Tinct color", "Background"]
    assert dm["selected"] == ["Tinct damage"]
    layer = [l for l in dm["layers"] if l["name"] == "Tinct damage"][0]
    assert layer["alpha"] and (layer["w"], layer["h"]) == (320, 240)


# --------------------------------------------------------------------------------------------
# Image kinds, hints with offsets, references, instances, groups, bad input

CASES = r'''
import os

def names(img):
    return [l.get_name() for l in img.get_layers()]

def requests():
    # the colorize requests the relay recorded so far (it writes each before passing it on)
    return sorted(f[:-5] for f in os.listdir(WORK + "/requests") if f.endswith(".json"))

def colorize(img, drawables, **kw):
    n = len(requests())
    st, msg, vals = run("plug-in-tinct-colorize", img, drawables, **kw)
    new = requests()[n:]
    return st, msg, (new[-1] if new else None), len(new)

# GRAY image: converted to RGB in the same run; the photo's gray values unchanged
img = load(WORK + "/gray.png")
photo = img.get_layers()[0]
REPORT["gray_base_before"] = img.get_base_type().value_nick
before = read(photo, 1)
st, msg, req, nreq = colorize(img, [photo])
REPORT["gray"] = {"status": st, "msg": msg, "req": req, "nreq": nreq, "base": img.get_base_type().value_nick, "layers": describe(img),
                  "same": read(photo, 1) == before}

# An offset photo layer smaller than the canvas
img = load(WORK + "/photo.png")
img.resize(400, 320, 0, 0)
photo = img.get_layers()[0]
photo.set_offsets(50, 40)
before = native(photo)
st, msg, req, nreq = colorize(img, [photo])
REPORT["offset"] = {"status": st, "msg": msg, "req": req, "nreq": nreq, "layers": describe(img), "same": native(photo) == before}

# RGBA photo with a transparent band: the result carries the photo's alpha
img = load(WORK + "/photo.png")
photo = img.get_layers()[0]
photo.add_alpha()
w = photo.get_width()
write(photo, 0, 0, w, 20, bytes(w * 20 * 4))
before = native(photo)
st, msg, req, nreq = colorize(img, [photo])
res = img.get_layers()[0]
REPORT["rgba"] = {"status": st, "msg": msg, "req": req, "nreq": nreq, "layers": describe(img), "same": native(photo) == before,
                  "alpha_equal": read(res)[3::4] == read(photo)[3::4],
                  "transparent_rows": set(read(res)[3:w * 20 * 4:4]) == {0}}

# 16-bit image: the result layer is in the image's precision
img = load(WORK + "/photo.png")
img.convert_precision(Gimp.Precision.U16_NON_LINEAR)
photo = img.get_layers()[0]
before = native(photo)
st, msg, req, nreq = colorize(img, [photo])
res = img.get_layers()[0]
REPORT["u16"] = {"status": st, "msg": msg, "req": req, "nreq": nreq, "layers": describe(img), "same": native(photo) == before,
                 "bpp": res.get_bpp(), "precision": img.get_precision().value_nick}
dump(res, WORK + "/u16.raw", 3, 16)

# A partial-size, offset hint layer with one pencil pixel (1 px brush), against the automatic run
img = load(WORK + "/photo.png")
photo = img.get_layers()[0]
colorize(img, [photo])
dump(img.get_layers()[0], WORK + "/pencil_auto.raw")
small = Gimp.Layer.new(img, "Tinct hints small", 60, 40, Gimp.ImageType.RGBA_IMAGE, 100.0, Gimp.LayerMode.NORMAL)
img.insert_layer(small, None, 0)
small.set_offsets(PX - 25, PY - 15)
small.fill(Gimp.FillType.TRANSPARENT)
Gimp.context_set_brush(Gimp.Brush.get_by_name("2. Hardness 100"))
Gimp.context_set_brush_size(1.0)
green = Gegl.Color.new("black")
green.set_rgba(0.05, 0.75, 0.1, 1.0)
Gimp.context_set_foreground(green)
Gimp.pencil(small, [float(PX), float(PY)])  # image coordinates: local (25, 15)
alpha = read(small)[3::4]
REPORT["pencil_painted"] = len(alpha) - alpha.count(0)
REPORT["pencil_at"] = list(read(small)[(15 * 60 + 25) * 4:(15 * 60 + 25) * 4 + 4])
st, msg, req, nreq = colorize(img, [photo])
REPORT["pencil"] = {"status": st, "msg": msg, "req": req, "nreq": nreq, "layers": describe(img)}
dump([l for l in img.get_layers() if l.get_name() == "Tinct color"][0], WORK + "/pencil_hint.raw")

# A stack of hint layers (bottom first, opacity, partial size; hidden ones and ones in a hidden group
# left out) and a damage mask with an offset
img = load(WORK + "/photo.png")
photo = img.get_layers()[0]
def painted(name, w, h, x, y, opacity=100.0, parent=None, visible=True):
    layer = Gimp.Layer.new(img, name, w, h, Gimp.ImageType.RGBA_IMAGE, opacity, Gimp.LayerMode.NORMAL)
    img.insert_layer(layer, parent, 0)
    layer.set_offsets(x, y)
    layer.fill(Gimp.FillType.TRANSPARENT)
    layer.set_visible(visible)
    write(layer, 1, 1, 2, 2, bytes([255, 0, 0, 255]) * 4)
    return layer
painted("Tinct hints", 320, 240, 0, 0)
painted("Tinct hints 2", 30, 20, 100, 50, opacity=50.0)
painted("Tinct hints off", 320, 240, 0, 0, visible=False)
hidden = Gimp.GroupLayer.new(img, "hidden group")
img.insert_layer(hidden, None, 0)
hidden.set_visible(False)
painted("Tinct hints in a hidden group", 320, 240, 0, 0, parent=hidden)
painted("Tinct damage", 50, 40, 10, 20)
before = native(photo)
st, msg, req, nreq = colorize(img, [photo])
REPORT["stack"] = {"status": st, "msg": msg, "req": req, "nreq": nreq, "layers": names(img),
                   "describe": describe(img), "photo_same": native(photo) == before}
restored = [l for l in img.get_layers() if l.get_name() == "Tinct restored"]
if restored:
    a = read(restored[0])[3::4]
    REPORT["stack"]["restored_alpha"] = [(i // 320, i % 320, a[i]) for i in range(len(a)) if a[i]]

# Reference from a file and from a `Tinct reference` layer
img = load(WORK + "/photo.png")
photo = img.get_layers()[0]
n_images = len(Gimp.get_images())
st, msg, req, nreq = colorize(img, [photo], reference="file", reference_file=WORK + "/ref.png")
REPORT["ref_file"] = {"status": st, "msg": msg, "req": req, "nreq": nreq, "images_left": len(Gimp.get_images()) - n_images}
ref = Gimp.Layer.new(img, "Tinct reference", 16, 12, Gimp.ImageType.RGB_IMAGE, 100.0, Gimp.LayerMode.NORMAL)
img.insert_layer(ref, None, 0)
write(ref, 0, 0, 16, 12, bytes([200, 40, 30]) * 192, 3)
st, msg, req, nreq = colorize(img, [photo], reference="layer")
REPORT["ref_layer"] = {"status": st, "msg": msg, "req": req, "nreq": nreq, "layers": names(img)}
st, msg, req, nreq = colorize(img, [photo], reference="file", reference_file=WORK + "/missing.png")
REPORT["ref_missing"] = {"status": st, "msg": msg, "req": req, "nreq": nreq, "layers": names(img)}

# Instances from the selection and `Tinct instance` channels
img = load(WORK + "/photo.png")
photo = img.get_layers()[0]
st, msg, req, nreq = colorize(img, [photo], instances="selection")
REPORT["nosel"] = {"status": st, "msg": msg, "req": req, "nreq": nreq, "layers": names(img)}
chan = Gimp.Channel.new(img, "Tinct instance 1", 320, 240, 100.0, Gegl.Color.new("black"))
img.insert_channel(chan, None, 0)
img.select_rectangle(Gimp.ChannelOps.REPLACE, 200, 100, 60, 50)
chan.edit_fill(Gimp.FillType.WHITE)
img.select_rectangle(Gimp.ChannelOps.REPLACE, 10, 10, 50, 40)
REPORT["chan_painted"] = len(read(chan, 1)) - read(chan, 1).count(0)
st, msg, req, nreq = colorize(img, [photo], instances="selection")
REPORT["sel"] = {"status": st, "msg": msg, "req": req, "nreq": nreq, "layers": names(img)}

# A photo inside a layer group: the result goes into the group, directly above it
img = load(WORK + "/photo.png")
photo = img.get_layers()[0]
group = Gimp.GroupLayer.new(img, "group")
img.insert_layer(group, None, 0)
img.reorder_item(photo, group, 0)
st, msg, req, nreq = colorize(img, [photo])
REPORT["group"] = {"status": st, "msg": msg, "req": req, "nreq": nreq, "top": names(img),
                   "children": [l.get_name() for l in group.get_children()]}

# Bad input: no layer selected
img = load(WORK + "/photo.png")
img.set_selected_layers([])
st, msg, req, nreq = colorize(img, [])
REPORT["nolayer"] = {"status": st, "msg": msg, "req": req, "nreq": nreq, "layers": names(img)}

# Bad input: an indexed image (scripts get the message; the dialog offers to convert)
img = load(WORK + "/photo.png")
img.convert_indexed(Gimp.ConvertDitherType.NONE, Gimp.ConvertPaletteType.GENERATE, 256, False, False, "")
photo = img.get_layers()[0]
before = native(photo)
st, msg, req, nreq = colorize(img, [photo])
REPORT["indexed"] = {"status": st, "msg": msg, "req": req, "nreq": nreq, "layers": names(img), "base": img.get_base_type().value_nick,
                     "same": native(photo) == before}

# A fully transparent hint layer -> colorized automatically, with a notice
img = load(WORK + "/photo.png")
photo = img.get_layers()[0]
run("plug-in-tinct-add-hint-layer", img, [photo])
st, msg, req, nreq = colorize(img, [photo])
REPORT["emptyhint"] = {"status": st, "msg": msg, "req": req, "nreq": nreq, "layers": names(img)}

# Bad input: a hint layer from another image
other = load(WORK + "/photo.png")
run("plug-in-tinct-add-hint-layer", other, [other.get_layers()[0]])
foreign = [l for l in other.get_layers() if l.get_name() == "Tinct hints"][0]
write(foreign, 10, 10, 2, 2, bytes([255, 0, 0, 255]) * 4)
img = load(WORK + "/photo.png")
photo = img.get_layers()[0]
st, msg, req, nreq = colorize(img, [photo], hint_layer=foreign)
REPORT["foreign"] = {"status": st, "msg": msg, "req": req, "nreq": nreq, "layers": names(img)}

# Bad input: a photo larger than the engine's limit (100 MP); its pixels are never read
img = Gimp.Image.new(10240, 10240, Gimp.ImageBaseType.RGB)
big = Gimp.Layer.new(img, "big", 10240, 10240, Gimp.ImageType.RGB_IMAGE, 100.0, Gimp.LayerMode.NORMAL)
img.insert_layer(big, None, 0)
st, msg, req, nreq = colorize(img, [big])
REPORT["big"] = {"status": st, "msg": msg, "req": req, "nreq": nreq, "layers": names(img)}
'''

PX, PY = 230, 60


@pytest.fixture(scope="module")
def cases_run(gimp):
    """The CASES batch, talking to the engine through a recording relay (tests/gimp/relay.py)."""
    if not gimp.engine.running():
        gimp.engine.start()
    relay = Relay(gimp.path("run", "relay-cases.sock"), gimp.engine.config.address(),
                  record_dir=gimp.path("requests"))
    try:
        rep, out, took = gimp.batch("PX, PY = %d, %d\n" % (PX, PY) + CASES, env={"TINCT_SOCKET": relay.path})
    finally:
        relay.close()
    print("cases batch: %.1fs" % took)
    _check(rep, out)
    rep["_out"] = out
    rep["_request"] = lambda name: load_request(gimp.path("requests"), name)
    return rep


def test_gray_image_converted_in_the_same_run(gimp, cases_run):
    g = cases_run["gray"]
    assert cases_run["gray_base_before"] == "gray"
    assert g["status"] == "success", g["msg"]
    assert g["base"] == "rgb"
    assert _names(g["layers"]) == ["Tinct color", "Background"]
    assert g["same"], "the gray values of the photo changed"
    header, bufs = cases_run["_request"](g["req"])
    gray = np.asarray(Image.open(gimp.path("gray.png")))
    assert bufs[header["photo"]["buffer"]].shape == (240, 320) and (bufs[0] == gray).all()
    assert header["hints"] == [] and header["options"]["render"] == 8


def test_offset_layer(cases_run):
    o = cases_run["offset"]
    assert o["status"] == "success", o["msg"]
    top, photo = o["layers"]
    assert top["name"] == "Tinct color" and o["same"]
    assert (top["x"], top["y"], top["w"], top["h"]) == (50, 40, photo["w"], photo["h"]) == (50, 40, 320, 240)


def test_rgba_photo_with_transparency(cases_run):
    r = cases_run["rgba"]
    assert r["status"] == "success", r["msg"]
    assert r["same"] and r["alpha_equal"] and r["transparent_rows"]
    header, bufs = cases_run["_request"](r["req"])
    assert bufs[header["photo"]["buffer"]].shape == (240, 320, 3), "the photo goes to the engine without alpha"


def test_16bit_image(gimp, cases_run):
    r = cases_run["u16"]
    assert r["status"] == "success", r["msg"]
    assert r["precision"].startswith("u16")
    assert r["bpp"] == 8, "the result layer is not RGBA u16"
    assert r["same"]
    header, bufs = cases_run["_request"](r["req"])
    photo = bufs[header["photo"]["buffer"]]
    assert photo.dtype == np.uint16 and photo.shape == (240, 320, 3) and header["options"]["render"] == 16
    rgb = _raw(gimp.path("u16.raw"), 320, 240, 3, np.uint16)
    assert (rgb % 257 != 0).mean() > 0.3, "the 16-bit result holds only 8-bit values"


def test_one_pencil_pixel_in_a_partial_offset_hint_layer(gimp, cases_run):
    assert cases_run["pencil_painted"] == 1, "the test's pencil did not paint exactly one pixel"
    assert cases_run["pencil_at"][3] == 255
    r = cases_run["pencil"]
    assert r["status"] == "success", r["msg"]
    assert _names(r["layers"]) == ["Tinct hints small", "Tinct color", "Background"]
    # what reached the engine: the partial layer with its offset, its one painted pixel in place
    header, bufs = cases_run["_request"](r["req"])
    assert len(header["hints"]) == 1
    h = header["hints"][0]
    assert (h["x"], h["y"], h.get("opacity", 1.0)) == (PX - 25, PY - 15, 1.0)
    rgba = bufs[h["buffer"]]
    assert rgba.shape == (40, 60, 4)
    assert list(zip(*np.nonzero(rgba[..., 3]))) == [(15, 25)]
    assert list(rgba[15, 25]) == cases_run["pencil_at"]
    # the engine composes it (tinct hints) into a one-pixel hint at the photo's (PX, PY)
    from engine.hints import compose_hint_layers
    composed = compose_hint_layers([(rgba, h["x"], h["y"], 1.0)], 240, 320)
    assert list(zip(*np.nonzero(composed[..., 3]))) == [(PY, PX)]
    win = np.s_[PY - 3:PY + 4, PX - 3:PX + 4, :3]
    auto = _raw(gimp.path("pencil_auto.raw"), 320, 240)[win].astype(int)
    hinted = _raw(gimp.path("pencil_hint.raw"), 320, 240)[win].astype(int)
    # one pencil pixel must pull the colors around it toward its own (the engine gives a lone dot a
    # small brush's footprint; engine/hints.py grow_tiny_dots)
    from engine.color import rgb_to_lab
    green_ab = rgb_to_lab(np.array([cases_run["pencil_at"][:3]], np.uint8))[0, 1:]

    def distance(rgb):
        return np.hypot(*(rgb_to_lab(rgb.astype(np.uint8))[..., 1:].reshape(-1, 2).mean(0) - green_ab))

    print("one-pixel hint: ab distance to its color near it, automatic %.1f, hinted %.1f"
          % (distance(auto), distance(hinted)))
    assert distance(hinted) < 0.8 * distance(auto)


def test_hint_layer_stack_and_damage_mask_reach_the_engine(cases_run):
    r = cases_run["stack"]
    assert r["status"] == "success", r["msg"]
    assert r["layers"] == ["Tinct damage", "hidden group", "Tinct hints off", "Tinct hints 2", "Tinct hints",
                           "Tinct color", "Tinct restored", "Background"]
    header, bufs = cases_run["_request"](r["req"])
    hints = [(h["x"], h["y"], h.get("opacity", 1.0), bufs[h["buffer"]].shape) for h in header["hints"]]
    assert hints == [(0, 0, 1.0, (240, 320, 4)), (100, 50, 0.5, (20, 30, 4))], hints
    for h in header["hints"]:
        assert list(zip(*np.nonzero(bufs[h["buffer"]][..., 3]))) == [(1, 1), (1, 2), (2, 1), (2, 2)]
    damage = header["damage"]
    assert (damage["x"], damage["y"], bufs[damage["buffer"]].shape) == (10, 20, (40, 50, 4))
    # the engine restored the 2x2 painted damage: it shows in a Normal layer under the color layer,
    # opaque exactly there, and the photo layer is untouched
    modes = {l["name"]: l["mode"] for l in r["describe"]}
    assert modes["Tinct restored"] == "normal" and modes["Tinct color"] == "lch-color"
    assert r["restored_alpha"] == [[21, 11, 255], [21, 12, 255], [22, 11, 255], [22, 12, 255]]
    assert r["photo_same"]


def test_reference_file_and_layer(cases_run):
    assert cases_run["ref_file"]["status"] == "success", cases_run["ref_file"]["msg"]
    assert cases_run["ref_file"]["images_left"] == 0, "the reference file's image was left open"
    header, bufs = cases_run["_request"](cases_run["ref_file"]["req"])
    ref = bufs[header["reference"]["buffer"]]
    assert ref.shape == (30, 40, 3) and (ref == (30, 90, 200)).all()
    header, bufs = cases_run["_request"](cases_run["ref_layer"]["req"])
    ref = bufs[header["reference"]["buffer"]]
    assert ref.shape == (12, 16, 3) and (ref == (200, 40, 30)).all()
    assert cases_run["ref_missing"]["nreq"] == 0
    assert cases_run["ref_layer"]["status"] == "success", cases_run["ref_layer"]["msg"]
    assert cases_run["ref_layer"]["layers"] == ["Tinct reference", "Tinct color", "Background"]
    missing = cases_run["ref_missing"]
    # GIMP itself refuses a reference file that does not exist (the file argument is OPEN-only)
    assert missing["status"] == "calling-error" and "reference-file" in missing["msg"]
    assert missing["layers"] == ["Tinct reference", "Tinct color", "Background"]


def test_instances_from_selection(cases_run):
    nosel = cases_run["nosel"]
    assert nosel["status"] == "execution-error" and "from selection" in nosel["msg"]
    assert nosel["layers"] == ["Background"]
    assert cases_run["chan_painted"] == 60 * 50
    sel = cases_run["sel"]
    assert sel["status"] == "success", sel["msg"]
    assert sel["layers"] == ["Tinct color", "Background"]
    header, bufs = cases_run["_request"](sel["req"])
    assert header["options"]["instances"] == "selection"
    masks = [bufs[m["buffer"]] for m in header["instances"]]
    assert [m.shape for m in masks] == [(240, 320), (240, 320)]
    assert [int((m > 0).sum()) for m in masks] == [50 * 40, 60 * 50]
    assert masks[0][10:50, 10:60].all() and masks[1][100:150, 200:260].all()


def test_photo_inside_a_group(cases_run):
    g = cases_run["group"]
    assert g["status"] == "success", g["msg"]
    assert g["top"] == ["group"] and g["children"] == ["Tinct color", "Background"]


@pytest.mark.parametrize("case,words,layers", [
    ("nolayer", "No layer is selected", ["Background"]),
    ("indexed", "indexed colors", ["Background"]),
    ("foreign", "belongs to another image", ["Background"]),
    ("big", "megapixels", ["big"]),
])
def test_bad_input_clear_message_document_unchanged(cases_run, case, words, layers):
    r = cases_run[case]
    assert r["status"] == "execution-error"
    assert words in r["msg"]
    assert r["layers"] == layers
    assert r["nreq"] == 0, "bad input must never reach the engine"
    if case == "indexed":
        assert r["base"] == "indexed" and r["same"]


def test_empty_hint_layer_colorizes_automatically_and_says_so(cases_run):
    r = cases_run["emptyhint"]
    assert r["status"] == "success", r["msg"]
    assert r["layers"] == ["Tinct hints", "Tinct color", "Background"]
    assert "is empty, so the photo was colorized automatically" in cases_run["_out"]
    header, _ = cases_run["_request"](r["req"])
    assert header["hints"] == []


# --------------------------------------------------------------------------------------------
# Colorize Again, the dialog, the indexed-image offer, undo in the GUI

AGAIN = r"""
img = load(WORK + "/photo.png")
photo = img.get_layers()[0]
st, msg, _ = run("plug-in-tinct-colorize-again", img, [photo])
REPORT["again"] = {"status": st, "msg": msg, "layers": describe(img)}
"""


def test_colorize_again_uses_the_last_settings(gimp, engine):
    path = os.path.join(gimp.home, ".config", "tinct", "last-colorize.json")
    with open(path, "w") as fh:
        json.dump({"size": 128, "instances": "none", "device": "cpu", "opacity": 37.0}, fh)
    relay = Relay(gimp.path("run", "relay-again.sock"), engine.config.address(), record_dir=gimp.path("req-again"))
    try:
        rep, out, took = gimp.batch(AGAIN, env={"TINCT_SOCKET": relay.path})
    finally:
        relay.close()
    _check(rep, out)
    again = rep["again"]
    assert again["status"] == "success", again["msg"]
    assert _names(again["layers"]) == ["Tinct color", "Background"]
    assert again["layers"][0]["opacity"] == pytest.approx(37.0), "Colorize Again did not use the last settings"
    assert relay.recorded == 1
    header, _ = load_request(gimp.path("req-again"), "000")
    opts = header["options"]
    assert (opts["size"], opts["instances"], opts["device"]) == (128, "none", "cpu")


def _interactive(gimp, body, windows, keys=None, read_labels=False):
    """Run a batch in GIMP on Xvfb, pressing a key (Return) in each dialog titled as in `windows`.
    read_labels: also read each dialog's label texts through AT-SPI (into rep["_labels"][title])."""
    keys = keys or ["Return"] * len(windows)
    seen, labels = [], {}
    with gui.desktop(gimp, accessibility=read_labels) as env:
        def press():
            probe = gui.Probe(gimp, env) if read_labels else None
            try:
                dialogs(probe)
            finally:
                if probe is not None:
                    probe.close()

        def dialogs(probe):
            for title, key in zip(windows, keys):
                found = gui.xdotool(gimp, env, "search", "--sync", "--name", "^%s$" % title, timeout=90)
                if not found:
                    return
                seen.append(title)
                time.sleep(1.0)  # let it map and settle
                if probe is not None:
                    labels[title] = probe.ask("labels", title)["labels"]
                for _ in range(10):  # press until the dialog is gone (a press before it is ready is lost)
                    gui.xdotool(gimp, env, "windowfocus", "--sync", found[0])
                    gui.xdotool(gimp, env, "key", "--window", found[0], key)
                    time.sleep(1.5)
                    if found[0] not in gui.xdotool(gimp, env, "search", "--name", "^%s$" % title):
                        break

        t = threading.Thread(target=press, daemon=True)
        t.start()
        rep, out, took = gimp.batch(body, env=env, timeout=180)
        t.join(10)
    _check(rep, out)
    assert seen == list(windows), "dialogs seen: %s\n%s" % (seen, out[-2000:])
    rep["_labels"] = labels
    return rep


DIALOG = r"""
img = load(WORK + "/photo.png")
photo = img.get_layers()[0]
before = native(photo)
proc = PDB.lookup_procedure("plug-in-tinct-colorize")
cfg = proc.create_config()
cfg.set_property("run-mode", Gimp.RunMode.INTERACTIVE)
cfg.set_property("image", img)
cfg.set_core_object_array("drawables", [photo])
cfg.set_property("opacity", 80.0)
cfg.set_property("size", 192)
vals = proc.run(cfg)
REPORT["dialog"] = {"status": vals.index(0).value_nick, "layers": describe(img), "same": native(photo) == before}
"""


def test_colorize_dialog_ok_runs_and_remembers(gimp, engine):
    """Interactive Colorize: the dialog opens (Xvfb) and shows the device the engine reports (read
    through AT-SPI); OK runs it and saves the settings for Colorize Again."""
    path = os.path.join(gimp.home, ".config", "tinct", "last-colorize.json")
    if os.path.exists(path):
        os.unlink(path)
    rep = _interactive(gimp, DIALOG, ["Tinct: Colorize"], read_labels=True)
    labels = rep["_labels"]["Tinct: Colorize"] or []
    device = engine.status()["device"]
    expected = "The engine runs on the %s." % ("GPU" if device in ("cuda", "gpu") else "CPU")
    assert expected in labels, "the dialog does not show the engine's device: %s" % labels
    d = rep["dialog"]
    assert d["status"] == "success" and d["same"]
    assert _names(d["layers"]) == ["Tinct color", "Background"]
    assert d["layers"][0]["opacity"] == pytest.approx(80.0)
    with open(path) as fh:
        saved = json.load(fh)
    assert saved["opacity"] == 80.0 and saved["size"] == 192


def test_colorize_dialog_cancel_changes_nothing(gimp, engine):
    served = engine.status()["served"]
    rep = _interactive(gimp, DIALOG, ["Tinct: Colorize"], keys=["Escape"])
    assert rep["dialog"]["status"] == "cancel"
    assert _names(rep["dialog"]["layers"]) == ["Background"] and rep["dialog"]["same"]
    assert engine.status()["served"] == served


INDEXED_OFFER = r"""
img = load(WORK + "/photo.png")
img.convert_indexed(Gimp.ConvertDitherType.NONE, Gimp.ConvertPaletteType.GENERATE, 256, False, False, "")
photo = img.get_layers()[0]
REPORT["base_before"] = img.get_base_type().value_nick
proc = PDB.lookup_procedure("plug-in-tinct-colorize")
cfg = proc.create_config()
cfg.set_property("run-mode", Gimp.RunMode.INTERACTIVE)
cfg.set_property("image", img)
cfg.set_core_object_array("drawables", [photo])
vals = proc.run(cfg)
REPORT["offer"] = {"status": vals.index(0).value_nick, "layers": [l.get_name() for l in img.get_layers()],
                   "base": img.get_base_type().value_nick}
"""


def test_indexed_image_offer_to_convert(gimp, engine):
    rep = _interactive(gimp, INDEXED_OFFER, ["Tinct: Colorize", "Tinct: indexed image"])
    assert rep["base_before"] == "indexed"
    assert rep["offer"]["status"] == "success"
    assert rep["offer"]["base"] == "rgb" and rep["offer"]["layers"] == ["Tinct color", "Background"]


UNDO = r"""
import os
import time

def wait_undo(n):
    # ask the host to press Ctrl+Z, then wait until GIMP has undone (the layer ids change)
    ids = [l.get_id() for l in img.get_layers()]
    open(WORK + "/ready-%d" % n, "w").close()
    t0 = time.time()
    while time.time() - t0 < 60:
        if os.path.exists(WORK + "/undone-%d" % n) and [l.get_id() for l in img.get_layers()] != ids:
            break
        time.sleep(0.1)
    time.sleep(0.2)

img = load(WORK + "/gray.png")
disp = Gimp.Display.new(img)
Gimp.displays_flush()
photo = img.get_layers()[0]
before = native(photo)
st, msg, _ = run("plug-in-tinct-colorize", img, [photo], size=128)
REPORT["run1"] = {"status": st, "msg": msg, "layers": [l.get_name() for l in img.get_layers()],
                  "base": img.get_base_type().value_nick}
first = read(img.get_layers()[0])
first_id = img.get_layers()[0].get_id()
run("plug-in-tinct-add-hint-layer", img, [photo])
hints = img.get_layers()[0]
write(hints, 150, 160, 5, 5, bytes([255, 30, 30, 255]) * 25)
st, msg, _ = run("plug-in-tinct-colorize", img, [hints], size=128)
REPORT["run2"] = {"status": st, "msg": msg, "layers": [l.get_name() for l in img.get_layers()],
                  "changed": read([l for l in img.get_layers() if l.get_name() == "Tinct color"][0]) != first}
wait_undo(1)   # Edit > Undo once: the second Colorize
back = [l for l in img.get_layers() if l.get_name() == "Tinct color"][0]
REPORT["undo1"] = {"layers": [l.get_name() for l in img.get_layers()], "same_layer": back.get_id() == first_id,
                   "restored": read(back) == first}
img.remove_layer([l for l in img.get_layers() if l.get_name() == "Tinct hints"][0])
Gimp.displays_flush()
wait_undo(2)   # undo the removal of the hint layer
wait_undo(3)   # undo Add Hint Layer
wait_undo(4)   # undo the first Colorize (with its GRAY -> RGB conversion)
REPORT["undo4"] = {"layers": [l.get_name() for l in img.get_layers()], "base": img.get_base_type().value_nick,
                   "same": native(photo) == before}
disp.delete()
"""


def test_one_undo_restores_the_document(gimp, engine):
    """In GIMP's GUI (Xvfb), Edit > Undo (Ctrl+Z) once takes back a whole Colorize run."""
    pressed = []
    with gui.desktop(gimp) as env:
        def undoer():
            for n in (1, 2, 3, 4):
                t0 = time.time()
                while not os.path.exists(gimp.path("ready-%d" % n)):
                    if time.time() - t0 > 150:
                        return
                    time.sleep(0.1)
                win = None
                for _ in range(50):
                    for i in gui.xdotool(gimp, env, "search", "--name", "GIMP$"):
                        if "layer" in gui.window_name(gimp, env, i):  # the image window: "[Untitled]-1.0 (RGB color ..., 2 layers) ..."
                            win = i
                    if win:
                        break
                    time.sleep(0.2)
                if win is None:
                    break
                gui.xdotool(gimp, env, "windowfocus", "--sync", win)
                time.sleep(0.3)
                gui.xdotool(gimp, env, "key", "--window", win, "ctrl+z")
                pressed.append(n)
                open(gimp.path("undone-%d" % n), "w").close()
            for n in (1, 2, 3, 4):  # never leave the batch waiting
                open(gimp.path("undone-%d" % n), "a").close()

        t = threading.Thread(target=undoer, daemon=True)
        t.start()
        rep, out, took = gimp.batch(UNDO, env=env, timeout=240, gui=True)
        t.join(10)
    _check(rep, out)
    assert pressed == [1, 2, 3, 4], "could not drive Edit > Undo:\n" + out[-2000:]
    assert rep["run1"]["status"] == "success" and rep["run1"]["base"] == "rgb", rep["run1"]["msg"]
    assert rep["run2"]["status"] == "success" and rep["run2"]["changed"], rep["run2"]["msg"]
    assert rep["undo1"]["layers"] == ["Tinct hints", "Tinct color", "Background"]
    assert rep["undo1"]["same_layer"] and rep["undo1"]["restored"], "one undo did not bring back the previous result"
    assert rep["undo4"]["layers"] == ["Background"]
    assert rep["undo4"]["base"] == "gray" and rep["undo4"]["same"]


PROGRESS_GUI = r"""
img = load(WORK + "/photo.png")
disp = Gimp.Display.new(img)
Gimp.displays_flush()
photo = img.get_layers()[0]
before = native(photo)
st, msg, _ = run("plug-in-tinct-colorize", img, [photo])
REPORT["run1"] = {"status": st, "msg": msg, "layers": describe(img)}
result = img.get_layers()[0]
result_pixels = read(result)
st, msg, _ = run("plug-in-tinct-colorize", img, [photo])
REPORT["run2"] = {"status": st, "msg": msg, "layers": describe(img), "same": native(photo) == before,
                  "result_kept": img.get_layers()[0].get_id() == result.get_id() and read(result) == result_pixels}
disp.delete()
"""


def test_progress_bar_moves_and_cancel_button_stops_the_run(gimp, engine):
    """In GIMP's GUI: the image window's progress bar (read through AT-SPI) moves as the engine reports
    progress, one event at a time; then a second run is stopped with the status bar's Cancel button,
    and the document, including the first run's result, is exactly as it was."""
    relay = Relay(gimp.path("run", "relay-gui.sock"), engine.config.address(), hold=True)
    samples, clicked, problems = [], [], []
    try:
        with gui.desktop(gimp, accessibility=True) as env:
            env["TINCT_SOCKET"] = relay.path

            def drive():
                probe = gui.Probe(gimp, env)
                try:
                    steer(probe)
                except Exception as exc:
                    problems.append(repr(exc))
                finally:
                    relay.release.set()
                    probe.close()

            def steer(probe):
                if not relay.holding.wait(150):
                    return problems.append("run 1 never reached the engine")
                bar = probe.ask("bar", 60)
                if not bar["found"]:
                    return problems.append("no progress bar while run 1 waits for the engine")
                samples.append(bar["value"])
                for _ in range(200):  # one engine event at a time, until run 1 ends
                    relay.step()
                    time.sleep(0.4)
                    now = probe.ask("value")
                    if not now["showing"] or relay.requests > 1:
                        break
                    samples.append(now["value"])
                deadline = time.time() + 150
                while relay.requests < 2 or not relay.holding.is_set():
                    if time.time() > deadline:
                        return problems.append("run 2 never reached the engine")
                    time.sleep(0.1)
                if not probe.ask("bar", 60)["found"]:
                    return problems.append("no progress bar while run 2 waits for the engine")
                clicked.append(probe.ask("cancel"))

            t = threading.Thread(target=drive, daemon=True)
            t.start()
            rep, out, took = gimp.batch(PROGRESS_GUI, env=env, timeout=300, gui=True)
            t.join(30)
    finally:
        relay.close()
    _check(rep, out)
    assert not problems, problems
    print("progress bar values while the engine worked: %s" % ", ".join("%.3f" % v for v in samples))
    assert rep["run1"]["status"] == "success", rep["run1"]["msg"]
    assert len(samples) >= 3
    assert all(0 <= v <= 1 for v in samples) and samples == sorted(samples), samples
    assert samples[-1] > samples[0] + 0.1, "the progress bar did not move"
    assert clicked and clicked[0]["found"] and clicked[0]["clicked"], clicked
    run2 = rep["run2"]
    assert run2["status"] == "cancel"
    assert _names(run2["layers"]) == ["Tinct color", "Background"]
    assert run2["same"] and run2["result_kept"]


# --------------------------------------------------------------------------------------------
# Cancel, an engine that dies mid-run, a stopped engine, autostart

ONE_RUN = r"""
img = load(WORK + "/photo.png")
photo = img.get_layers()[0]
before = native(photo)
st, msg, _ = run("plug-in-tinct-colorize", img, [photo])
REPORT["run"] = {"status": st, "msg": msg, "layers": [l.get_name() for l in img.get_layers()],
                 "same": native(photo) == before}
"""

TWO_RUNS = ONE_RUN + r"""
REPORT["first"] = REPORT.pop("run")
st, msg, _ = run("plug-in-tinct-colorize", img, [photo])
REPORT["second"] = {"status": st, "msg": msg, "layers": [l.get_name() for l in img.get_layers()],
                    "same": native(photo) == before}
"""


def _plugin_pids(root):
    """Pids of tinct.py plug-in processes running inside this chroot (started by our GIMP)."""
    pids = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmd = open("/proc/%s/cmdline" % pid, "rb").read().split(b"\0")
            proc_root = os.readlink("/proc/%s/root" % pid)
        except OSError:
            continue
        if proc_root == os.path.realpath(root) and any(c.endswith(b"/tinct/tinct.py") for c in cmd):
            pids.append(int(pid))
    return pids


def test_cancel_mid_run_leaves_document_unchanged(gimp, engine):
    """GIMP's Cancel on a plug-in's progress kills the plug-in (gimp_plug_in_close(plug_in, TRUE)); here
    it strikes while the engine works on the request. Nothing was changed before the answer, so the
    document is exactly as it was, and the engine serves the next run."""
    relay = Relay(gimp.path("run", "relay-cancel.sock"), engine.config.address(), hold=True)
    killed = []

    def cancel():
        if relay.holding.wait(120):
            for pid in _plugin_pids(gimp.root):
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            relay.closed_by_client.wait(10)
        relay.release.set()

    t = threading.Thread(target=cancel, daemon=True)
    t.start()
    try:
        rep, out, took = gimp.batch(TWO_RUNS, env={"TINCT_SOCKET": relay.path})
    finally:
        relay.close()
    t.join(5)
    _check(rep, out)
    assert killed, "the plug-in process was not found while the engine worked"
    first = rep["first"]
    assert first["status"] != "success"
    assert first["layers"] == ["Background"] and first["same"]
    second = rep["second"]
    assert second["status"] == "success", second["msg"]
    assert second["layers"] == ["Tinct color", "Background"] and second["same"]


def test_engine_dies_mid_run_clean_error(gimp, engine):
    relay = Relay(gimp.path("run", "relay-crash.sock"), engine.config.address(), hold=True)
    killed = []

    def crash():
        if relay.holding.wait(120):
            killed.append(engine.kill())

    t = threading.Thread(target=crash, daemon=True)
    t.start()
    try:
        rep, out, took = gimp.batch(ONE_RUN, env={"TINCT_SOCKET": relay.path})
    finally:
        relay.close()
    t.join(5)
    _check(rep, out)
    assert killed and killed[0], "the engine was not killed mid-run"
    r = rep["run"]
    assert r["status"] == "execution-error"
    assert "stopped while working on the photo" in r["msg"] and "not changed" in r["msg"], r["msg"]
    assert took < 60, "the crash was noticed only after %.0f s" % took
    assert r["layers"] == ["Background"] and r["same"]


def test_engine_stopped_without_a_start_command_clean_error(gimp):
    gimp.engine.stop()
    assert not gimp.engine.running()
    with open(engine_json(gimp)) as fh:
        cfg = json.load(fh)
    cfg["command"] = cfg["python"] = None
    alt = gimp.path("engine-nostart.json")
    with open(alt, "w") as fh:
        json.dump(cfg, fh)
    rep, out, took = gimp.batch(ONE_RUN, env={"TINCT_ENGINE_CONFIG": alt})
    _check(rep, out)
    r = rep["run"]
    assert r["status"] == "execution-error"
    assert "No Tinct engine is running" in r["msg"] and "not changed" in r["msg"], r["msg"]
    assert r["layers"] == ["Background"] and r["same"]
    assert not gimp.engine.running()


def test_engine_stopped_autostart_recovers(gimp):
    """With the engine stopped, the plug-in's client starts one from engine.json's command (inside the
    chroot, where GIMP runs) and the run succeeds."""
    assert not gimp.unshared, ("the engine's Python cannot be started inside the chroot: %s exist(s) there "
                               "already, so the host's could not be mounted (use a Python outside /usr, e.g. "
                               "a pyenv or a venv's base)" % gimp.unshared)
    gimp.engine.stop()
    assert not gimp.engine.running()
    rep, out, took = gimp.batch(ONE_RUN)
    _check(rep, out)
    r = rep["run"]
    assert r["status"] == "success", r["msg"]
    assert r["layers"] == ["Tinct color", "Background"] and r["same"]
    st = gimp.engine.status()
    assert st is not None, "no engine runs after the autostart"
    assert process_root(st["pid"]) == gimp.root, "the engine was not started by the plug-in inside GIMP's chroot"
    print("autostarted engine: pid %s, root %s; batch %.1fs" % (st["pid"], process_root(st["pid"]), took))


# --------------------------------------------------------------------------------------------
# Detect Damage

DETECT = r'''
img = load(WORK + "/damaged.png")
photo = img.get_layers()[0]
before = native(photo)
REPORT["menu"] = list(PDB.lookup_procedure("plug-in-tinct-detect-damage").get_menu_paths())
st, msg, _ = run("plug-in-tinct-detect-damage", img, [photo])
REPORT["first"] = {"status": st, "msg": msg, "layers": describe(img), "same": native(photo) == before,
                   "selected": [l.get_name() for l in img.get_selected_layers()]}
damage = [l for l in img.get_layers() if l.get_name() == "Tinct damage"][0]
dump(damage, WORK + "/detect1.raw")
# the user corrects the layer: paints a green block where nothing was found
write(damage, PX, PY, 4, 3, bytes([0, 255, 0, 255]) * 12)
dump(damage, WORK + "/painted.raw")
st, msg, _ = run("plug-in-tinct-detect-damage", img, [photo], threshold=0.9)
REPORT["second"] = {"status": st, "msg": msg, "layers": describe(img), "same": native(photo) == before}
dump([l for l in img.get_layers() if l.get_name() == "Tinct damage"][0], WORK + "/detect2.raw")

# a grayscale image stays grayscale: the layer is gray + alpha
img = load(WORK + "/damaged_gray.png")
photo = img.get_layers()[0]
st, msg, _ = run("plug-in-tinct-detect-damage", img, [photo])
REPORT["gray"] = {"status": st, "msg": msg, "layers": describe(img), "base": img.get_base_type().value_nick}
dump([l for l in img.get_layers() if l.get_name() == "Tinct damage"][0], WORK + "/detect_gray.raw", 2)
'''


@pytest.fixture(scope="module")
def detect_run(gimp):
    """An old print made from the example photo (cracks, scratches, dust; engine/damage_synth.py) and
    what Detect Damage made of it, twice (the second run after the user's corrections)."""
    from engine.color import rgb_to_lab
    from engine.damage_synth import DamageSynth

    rgb = np.asarray(Image.open(os.path.join(EXAMPLES, "great_wall_bw.png")).convert("RGB"))
    l = rgb_to_lab(rgb)[..., 0]
    old, truth = DamageSynth(np.random.default_rng(5)).sample(l, damaged=True, negatives=False,
                                                              kinds=["crack", "scratch", "dust"])
    gray = Image.fromarray(np.clip(np.round(old * 2.55), 0, 255).astype(np.uint8))
    gray.convert("RGB").save(gimp.path("damaged.png"))
    gray.save(gimp.path("damaged_gray.png"))
    if not gimp.engine.running():
        gimp.engine.start()
    from engine.detect_damage import Detector

    found = Detector().detect(np.asarray(gray.convert("RGB")))
    flat = ~found
    px, py = next((x, y) for y in range(0, found.shape[0] - 3, 3) for x in range(0, found.shape[1] - 4, 4)
                  if flat[y:y + 3, x:x + 4].all())
    rep, out, took = gimp.batch("PX, PY = %d, %d\n" % (px, py) + DETECT)
    print("detect batch: %.1fs" % took)
    _check(rep, out)
    rep.update(truth=truth, found=found, painted=(px, py))
    return rep


def test_detect_damage_fills_a_new_damage_layer_with_what_the_engine_finds(gimp, detect_run):
    first = detect_run["first"]
    assert first["status"] == "success", first["msg"]
    assert detect_run["menu"] == ["<Image>/Filters/Colors/Tinct"]
    assert _names(first["layers"]) == ["Tinct damage", "Background"] and first["same"]
    assert first["selected"] == ["Tinct damage"]
    layer, photo = first["layers"]
    assert layer["alpha"] and layer["mode"] == "normal"
    assert (layer["x"], layer["y"], layer["w"], layer["h"]) == (photo["x"], photo["y"], photo["w"], photo["h"])
    rgba = _raw(gimp.path("detect1.raw"), photo["w"], photo["h"])
    painted = rgba[..., 3] > 0
    found, truth = detect_run["found"], detect_run["truth"]
    # the layer holds the engine's mask of the photo GIMP sent (the same detector in this process)
    assert (painted != found).mean() < 1e-3, (painted != found).sum()
    assert (rgba[painted][:, :3] == (255, 0, 0)).all()
    # and that mask is about the damage (the detector's own quality is tests/test_detect_damage.py's)
    hit = (painted & truth).sum()
    print("detect in GIMP: precision %.3f recall %.3f" % (hit / painted.sum(), hit / truth.sum()))
    assert hit / truth.sum() > 0.4 and hit / painted.sum() > 0.4


def test_detect_damage_again_keeps_what_the_user_painted(gimp, detect_run):
    second = detect_run["second"]
    assert second["status"] == "success", second["msg"]
    assert _names(second["layers"]) == ["Tinct damage", "Background"] and second["same"]
    w, h = second["layers"][1]["w"], second["layers"][1]["h"]
    before = _raw(gimp.path("painted.raw"), w, h)
    after = _raw(gimp.path("detect2.raw"), w, h)
    px, py = detect_run["painted"]
    assert (after[py:py + 3, px:px + 4] == (0, 255, 0, 255)).all(), "the user's paint was lost"
    # at threshold 0.9 the detector finds a subset of before: everything painted stays painted
    assert (after[..., 3][before[..., 3] > 0] > 0).all()
    assert (after[..., 3] > 0).sum() >= (before[..., 3] > 0).sum()


def test_detect_damage_on_a_gray_image_adds_a_gray_layer(gimp, detect_run):
    g = detect_run["gray"]
    assert g["status"] == "success", g["msg"]
    assert g["base"] == "gray" and _names(g["layers"]) == ["Tinct damage", "Background"]
    ya = _raw(gimp.path("detect_gray.raw"), g["layers"][1]["w"], g["layers"][1]["h"], 2)
    painted = ya[..., 1] > 0
    assert (painted != detect_run["found"]).mean() < 1e-3 and (ya[..., 0][painted] == 255).all()


DETECT_UNDO = UNDO.split("img = load(")[0] + r"""
img = load(WORK + "/damaged.png")
disp = Gimp.Display.new(img)
Gimp.displays_flush()
photo = img.get_layers()[0]
run("plug-in-tinct-add-damage-mask", img, [photo])
damage = img.get_layers()[0]
write(damage, PX, PY, 4, 3, bytes([0, 255, 0, 255]) * 12)
painted, damage_id = read(damage), damage.get_id()
st, msg, _ = run("plug-in-tinct-detect-damage", img, [photo])
after = [l for l in img.get_layers() if l.get_name() == "Tinct damage"][0]
REPORT["run"] = {"status": st, "msg": msg, "layers": [l.get_name() for l in img.get_layers()],
                 "changed": read(after) != painted}
wait_undo(1)   # Edit > Undo once: the whole Detect Damage run
back = [l for l in img.get_layers() if l.get_name() == "Tinct damage"][0]
REPORT["undo1"] = {"layers": [l.get_name() for l in img.get_layers()], "same_layer": back.get_id() == damage_id,
                   "restored": read(back) == painted}
disp.delete()
"""


def _undo_once_when_ready(gimp, env, pressed, wait_s):
    """A thread that, once the batch script leaves `ready-1`, presses Ctrl+Z in GIMP's image window
    (appending 1 to `pressed`) and leaves `undone-1`, always, so the script never waits forever."""
    def undoer():
        t0 = time.time()
        while not os.path.exists(gimp.path("ready-1")) and time.time() - t0 < wait_s:
            time.sleep(0.1)
        win = None
        for _ in range(50):
            for i in gui.xdotool(gimp, env, "search", "--name", "GIMP$"):
                if "layer" in gui.window_name(gimp, env, i):
                    win = i
            if win:
                break
            time.sleep(0.2)
        if win is not None:
            gui.xdotool(gimp, env, "windowfocus", "--sync", win)
            time.sleep(0.3)
            gui.xdotool(gimp, env, "key", "--window", win, "ctrl+z")
            pressed.append(1)
        open(gimp.path("undone-1"), "a").close()

    for name in ("ready-1", "undone-1"):  # left by an earlier GUI test
        if os.path.exists(gimp.path(name)):
            os.unlink(gimp.path(name))
    t = threading.Thread(target=undoer, daemon=True)
    t.start()
    return t


def test_one_undo_takes_back_detect_damage(gimp, engine, detect_run):
    """In GIMP's GUI (Xvfb), Edit > Undo (Ctrl+Z) once takes back a whole Detect Damage run: the user's
    damage layer comes back as they painted it."""
    pressed = []
    with gui.desktop(gimp) as env:
        t = _undo_once_when_ready(gimp, env, pressed, 150)
        px, py = detect_run["painted"]
        rep, out, took = gimp.batch("PX, PY = %d, %d\n" % (px, py) + DETECT_UNDO, env=env, timeout=240, gui=True)
        t.join(10)
    _check(rep, out)
    assert pressed == [1], "could not drive Edit > Undo:\n" + out[-2000:]
    assert rep["run"]["status"] == "success" and rep["run"]["changed"], rep["run"]["msg"]
    assert rep["run"]["layers"] == ["Tinct damage", "Background"]
    assert rep["undo1"]["layers"] == ["Tinct damage", "Background"]
    assert rep["undo1"]["same_layer"] and rep["undo1"]["restored"], "one undo did not bring back the user's layer"


# --------------------------------------------------------------------------------------------
# Interactive... (issue 20): the window's Apply, scripted (points-file runs `tinct ui --apply-points`,
# the code path of the window's Apply button), inside GIMP's chroot

INTERACTIVE = UNDO.split("img = load(")[0] + r"""
import json

img = load(WORK + "/photo.png")
disp = Gimp.Display.new(img)
Gimp.displays_flush()
photo = img.get_layers()[0]
before = native(photo)
REPORT["menu"] = list(PDB.lookup_procedure("plug-in-tinct-interactive").get_menu_paths())
run("plug-in-tinct-add-hint-layer", img, [photo])
hints = img.get_layers()[0]
write(hints, 150, 160, 3, 3, bytes([255, 30, 30, 255]) * 9)
painted_before = read(hints)
with open(WORK + "/points.json", "w") as fh:
    json.dump([{"x": 151, "y": 161, "rgb": [255, 30, 30]}, {"x": 40, "y": 200, "rgb": [20, 160, 40]}], fh)
st, msg, _ = run("plug-in-tinct-interactive", img, [photo], points_file=WORK + "/points.json")
new_hints = [l for l in img.get_layers() if l.get_name() == "Tinct hints"]
REPORT["apply"] = {"status": st, "msg": msg, "layers": describe(img), "same": native(photo) == before}
if new_hints:
    dump(new_hints[0], WORK + "/interactive_hints.raw")
wait_undo(1)   # Edit > Undo once: the whole Apply
back = [l for l in img.get_layers() if l.get_name() == "Tinct hints"]
REPORT["undo1"] = {"layers": describe(img), "restored": bool(back) and read(back[0]) == painted_before,
                   "same": native(photo) == before}
disp.delete()
"""


def test_interactive_apply_gives_hints_and_color_layers_in_one_undo(gimp, engine):
    """Filters > Colors > Tinct > Interactive... with its Apply scripted: the points come back as the
    `Tinct hints` layer (one dot each) and the colors as `Tinct color`; one Edit > Undo (Ctrl+Z, GIMP's
    GUI on Xvfb) takes back both and brings the hint layer the user painted back."""
    pressed = []
    with gui.desktop(gimp) as env:
        t = _undo_once_when_ready(gimp, env, pressed, 200)
        rep, out, took = gimp.batch(INTERACTIVE, env=env, timeout=300, gui=True)
        t.join(10)
    _check(rep, out)
    assert "<Image>/Filters/Colors/Tinct" in rep["menu"]
    assert rep["apply"]["status"] == "success", rep["apply"]["msg"]
    assert _names(rep["apply"]["layers"]) == ["Tinct hints", "Tinct color", "Background"], rep["apply"]["layers"]
    assert rep["apply"]["same"], "Interactive... changed the photo's pixels"
    hints = _raw(gimp.path("interactive_hints.raw"), 320, 240)
    ys, xs = np.nonzero(hints[..., 3])
    assert sorted(zip(xs.tolist(), ys.tolist())) == [(40, 200), (151, 161)]
    assert hints[161, 151].tolist() == [255, 30, 30, 255] and hints[200, 40].tolist() == [20, 160, 40, 255]
    assert pressed == [1], "could not drive Edit > Undo:\n" + out[-2000:]
    assert _names(rep["undo1"]["layers"]) == ["Tinct hints", "Background"]
    assert rep["undo1"]["restored"] and rep["undo1"]["same"], "one undo did not bring the painted hints back"


INTERACTIVE_CLOSED = r"""
img = load(WORK + "/photo.png")
photo = img.get_layers()[0]
run("plug-in-tinct-add-hint-layer", img, [photo])
hints = img.get_layers()[0]
write(hints, 150, 160, 3, 3, bytes([255, 30, 30, 255]) * 9)
before, painted, layers = native(photo), read(hints), describe(img)
st, msg, _ = run("plug-in-tinct-interactive", img, [photo])
REPORT["closed"] = {"status": st, "msg": msg, "same_layers": describe(img) == layers,
                    "same": native(photo) == before, "same_hints": read(img.get_layers()[0]) == painted}
"""


def _window_pids():
    """The `tinct ui --apply-to` processes running now (the plug-in's window, inside the chroot)."""
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as fh:
                args = fh.read().split(b"\0")
        except OSError:
            continue
        if b"ui" in args and b"--apply-to" in args:
            pids.append(int(pid))
    return pids


def _serving(pid):
    """Whether the window process is up: it listens on a TCP port and its main thread waits in poll
    (the page server's loop). A Ctrl+C then is a user closing an open window, not one that lands
    while Python is still importing."""
    try:
        links = [os.readlink("/proc/%d/fd/%s" % (pid, fd)) for fd in os.listdir("/proc/%d/fd" % pid)]
        with open("/proc/%d/net/tcp" % pid) as fh:
            listening = {f[9] for f in (line.split() for line in fh.readlines()[1:]) if f[3] == "0A"}
        with open("/proc/%d/wchan" % pid) as fh:
            wchan = fh.read()
    except OSError:
        return False
    sockets = {link[len("socket:["):-1] for link in links if link.startswith("socket:[")}
    return bool(sockets & listening) and wchan.startswith(("poll_schedule_timeout", "do_sys_poll", "do_select"))


def _threads(pid):
    """Each thread's name and kernel wait channel: what a window that outlived Ctrl+C is doing."""
    out = []
    for tid in sorted(os.listdir("/proc/%d/task" % pid)):
        try:
            with open("/proc/%d/task/%s/comm" % (pid, tid)) as a, open("/proc/%d/task/%s/wchan" % (pid, tid)) as b:
                out.append("%s %s %s" % (tid, a.read().strip(), b.read()))
        except OSError:
            pass
    return out


def test_interactive_window_closed_without_apply_changes_nothing(gimp, engine):
    """Interactive... without a points file opens the window (here, with no display, its page server);
    closing it (Ctrl+C) without Apply leaves the image exactly as it was."""
    closed, outlived = [], []

    def closer():
        t0 = time.time()
        while not closed and time.time() - t0 < 150:
            for pid in _window_pids():
                if _serving(pid):
                    os.kill(pid, signal.SIGINT)
                    closed.append(pid)
            time.sleep(0.2)
        if closed and not wait_gone(closed[0], 30):   # fail with what it was doing, not GIMP's timeout
            outlived.extend(_threads(closed[0]))
            os.kill(closed[0], signal.SIGKILL)

    t = threading.Thread(target=closer, daemon=True)
    t.start()
    rep, out, took = gimp.batch(INTERACTIVE_CLOSED, timeout=240)
    t.join(5)
    assert not outlived, "the window outlived Ctrl+C by 30 s: %s" % outlived
    _check(rep, out)
    assert closed, "the plug-in opened no window:\n" + out[-2000:]
    r = rep["closed"]
    assert r["status"] == "cancel", r["msg"]
    assert r["same_layers"] and r["same"] and r["same_hints"]
