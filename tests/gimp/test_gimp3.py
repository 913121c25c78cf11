"""The GIMP 3 plug-in in real GIMP 3 (Debian trixie chroot, gimp-console-3.0 batch mode).

Each GIMP launch costs ~5 s, so one batch script covers many cases and the
module shares one session (profile + installed plug-in) and one engine.
Run: `python3 -m pytest -q -m gimp tests/gimp` (root; builds the chroot on first use).
"""

import os
import subprocess
import threading
import time

import numpy as np
import pytest
from PIL import Image

from tests.gimp import harness
from tests.gimp.engine_fixture import start_engine

pytestmark = [pytest.mark.gimp, pytest.mark.slow]

EXAMPLES = os.path.join(harness.ROOT, "examples")


@pytest.fixture(scope="module")
def gimp():
    reason = harness.unavailable_reason()
    if reason:
        pytest.skip(reason)
    with harness.GimpSession() as session:
        session.plugin_dir = harness.install_plugin(session.profile)
        gray = Image.open(os.path.join(EXAMPLES, "great_wall_bw.png")).convert("L")
        gray.convert("RGB").save(session.host_path("photo.png"))
        gray.save(session.host_path("gray.png"))
        Image.new("RGB", (40, 30), (30, 90, 200)).save(session.host_path("ref.png"))
        engine = start_engine(session)
        try:
            session.engine = engine
            yield session
        finally:
            engine.stop()


def _rgb(path, w, h, channels=4, dtype=np.uint8):
    return np.frombuffer(open(path, "rb").read(), dtype).reshape(h, w, channels)


def _hue_dist(rgb, target):
    """Angle between the chroma directions (in a simple opponent space) of rgb pixels and a target color."""
    def opp(c):
        c = np.asarray(c, np.float64)
        return np.stack([c[..., 0] - c[..., 1], (c[..., 0] + c[..., 1]) / 2 - c[..., 2]], -1)
    a, b = opp(rgb), opp(np.array(target, np.float64))
    cos = (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b) + 1e-9)
    return np.arccos(np.clip(cos, -1, 1))


MAIN = r'''
img = load(WORK + "/photo.png")
photo = img.get_layers()[0]
before = native(photo)
REPORT["procs"] = sorted(PDB.query_procedures("plug-in-tinct.*", "", "", "", "", "", "", ""))
st, msg, vals = run("plug-in-tinct-colorize", img, [photo], size=256)
REPORT["first"] = {"status": st, "msg": msg, "layers": describe(img), "same": native(photo) == before,
                   "returned": vals.index(1).get_name() if vals.length() > 1 and vals.index(1) else None}
res = img.get_layers()[0]
dump(res, WORK + "/first.raw")
res.set_opacity(60.0)
st, msg, _ = run("plug-in-tinct-add-hint-layer", img, [photo])
hints = [l for l in img.get_layers() if l.get_name().startswith("Tinct hints")][0]
REPORT["addhint"] = {"status": st, "layers": describe(img),
                     "selected": [l.get_name() for l in img.get_selected_layers()],
                     "empty": set(read(hints)[3::4]) == {0}}
# a 5x5 saturated blue dot on the wall/foliage at (DOT_X, DOT_Y)
write(hints, DOT_X - 2, DOT_Y - 2, 5, 5, bytes([20, 60, 255, 255]) * 25)
st, msg, _ = run("plug-in-tinct-colorize", img, [hints], size=256)
REPORT["second"] = {"status": st, "msg": msg, "layers": describe(img), "same": native(photo) == before}
dump([l for l in img.get_layers() if l.get_name() == "Tinct color"][0], WORK + "/second.raw")
st, msg, _ = run("plug-in-tinct-add-damage-mask", img, [photo])
REPORT["damage"] = {"status": st, "layers": describe(img)}
'''

DOT_X, DOT_Y = 160, 170


@pytest.fixture(scope="module")
def main_run(gimp):
    rep, out, took = gimp.batch("DOT_X, DOT_Y = %d, %d\n" % (DOT_X, DOT_Y) + MAIN)
    print("main batch: %.1fs" % took)
    assert rep["_done"] and "exception" not in rep, rep.get("exception", out[-3000:])
    return rep


def test_procedures_registered(main_run):
    assert main_run["procs"] == ["plug-in-tinct-add-damage-mask", "plug-in-tinct-add-hint-layer",
                                 "plug-in-tinct-colorize", "plug-in-tinct-colorize-again"]


def test_colorize_real_photo(gimp, main_run):
    first = main_run["first"]
    assert first["status"] == "success", first["msg"]
    top, photo = first["layers"][0], first["layers"][1]
    assert [l["name"] for l in first["layers"]] == ["Tinct color", "Background"]
    assert top["mode"] == "lch-color"
    assert (top["x"], top["y"], top["w"], top["h"]) == (photo["x"], photo["y"], photo["w"], photo["h"])
    rgba = _rgb(gimp.host_path("first.raw"), photo["w"], photo["h"])
    spread = rgba[..., :3].astype(int).max(-1) - rgba[..., :3].astype(int).min(-1)
    assert spread.mean() > 3, "the result has no color"
    assert first["same"], "the photo's pixels changed"
    assert first["returned"] == "Tinct color"


def test_hint_moves_color_and_rerun_replaces(gimp, main_run):
    add = main_run["addhint"]
    assert add["status"] == "success"
    names = [l["name"] for l in add["layers"]]
    assert names == ["Tinct hints", "Tinct color", "Background"]
    assert add["selected"] == ["Tinct hints"] and add["empty"]
    second = main_run["second"]
    assert second["status"] == "success", second["msg"]
    names = [l["name"] for l in second["layers"]]
    assert names.count("Tinct color") == 1 and names == ["Tinct hints", "Tinct color", "Background"]
    color = [l for l in second["layers"] if l["name"] == "Tinct color"][0]
    assert color["opacity"] == pytest.approx(60.0), "re-run must keep the user's opacity"
    w, h = color["w"], color["h"]
    a = _rgb(gimp.host_path("first.raw"), w, h)[DOT_Y - 6:DOT_Y + 7, DOT_X - 6:DOT_X + 7, :3]
    b = _rgb(gimp.host_path("second.raw"), w, h)[DOT_Y - 6:DOT_Y + 7, DOT_X - 6:DOT_X + 7, :3]
    target = (20, 60, 255)
    assert _hue_dist(b, target).mean() < _hue_dist(a, target).mean() - 0.2, "the color did not move toward the hint"
    assert second["same"]


def test_add_damage_mask(main_run):
    dm = main_run["damage"]
    assert dm["status"] == "success"
    assert "Tinct damage" in [l["name"] for l in dm["layers"]]


CASES = r'''
def layer_names(img):
    return [l.get_name() for l in img.get_layers()]

# GRAY image: converted to RGB in the same run; the photo's gray values unchanged
img = load(WORK + "/gray.png")
photo = img.get_layers()[0]
REPORT["gray_base_before"] = img.get_base_type().value_nick
before = read(photo, 1)
st, msg, _ = run("plug-in-tinct-colorize", img, [photo])
REPORT["gray"] = {"status": st, "msg": msg, "base": img.get_base_type().value_nick, "layers": describe(img),
                  "same": read(photo, 1) == before, "rgb_same": set(read(photo, 3)[0::3]) == set(before)}

# An offset photo layer smaller than the canvas
img = load(WORK + "/photo.png")
img.resize(400, 320, 0, 0)
photo = img.get_layers()[0]
photo.set_offsets(50, 40)
st, msg, _ = run("plug-in-tinct-colorize", img, [photo])
REPORT["offset"] = {"status": st, "msg": msg, "layers": describe(img)}

# RGBA photo with a transparent region: the result carries the photo's alpha
img = load(WORK + "/photo.png")
photo = img.get_layers()[0]
photo.add_alpha()
w = photo.get_width()
write(photo, 0, 0, w, 20, bytes(w * 20 * 4))
before = native(photo)
st, msg, _ = run("plug-in-tinct-colorize", img, [photo])
res = img.get_layers()[0]
REPORT["rgba"] = {"status": st, "msg": msg, "layers": describe(img), "same": native(photo) == before,
                  "alpha_equal": read(res)[3::4] == read(photo)[3::4]}

# 16-bit image: the result layer is in the image's precision
img = load(WORK + "/photo.png")
img.convert_precision(Gimp.Precision.U16_NON_LINEAR)
photo = img.get_layers()[0]
before = native(photo)
st, msg, _ = run("plug-in-tinct-colorize", img, [photo])
res = img.get_layers()[0]
REPORT["u16"] = {"status": st, "msg": msg, "layers": describe(img), "same": native(photo) == before,
                 "bpp": res.get_bpp(), "precision": img.get_precision().value_nick}

# Reference from a file and from a `Tinct reference` layer; instances from the selection
img = load(WORK + "/photo.png")
photo = img.get_layers()[0]
st, msg, _ = run("plug-in-tinct-colorize", img, [photo], reference="file", reference_file=WORK + "/ref.png")
REPORT["ref_file"] = {"status": st, "msg": msg}
ref = Gimp.Layer.new(img, "Tinct reference", 16, 12, Gimp.ImageType.RGB_IMAGE, 100.0, Gimp.LayerMode.NORMAL)
img.insert_layer(ref, None, 0)
write(ref, 0, 0, 16, 12, bytes([200, 40, 30]) * 192, 3)
st, msg, _ = run("plug-in-tinct-colorize", img, [photo], reference="layer")
REPORT["ref_layer"] = {"status": st, "msg": msg, "layers": layer_names(img)}
img = load(WORK + "/photo.png")
photo = img.get_layers()[0]
st, msg, _ = run("plug-in-tinct-colorize", img, [photo], instances="selection")
REPORT["nosel"] = {"status": st, "msg": msg, "layers": layer_names(img)}
img.select_rectangle(Gimp.ChannelOps.REPLACE, 10, 10, 50, 40)
st, msg, _ = run("plug-in-tinct-colorize", img, [photo], instances="selection")
REPORT["sel"] = {"status": st, "msg": msg, "layers": layer_names(img)}

# A photo inside a layer group: the result goes into the group, directly above it
img = load(WORK + "/photo.png")
photo = img.get_layers()[0]
group = Gimp.GroupLayer.new(img, "group")
img.insert_layer(group, None, 0)
img.reorder_item(photo, group, 0)
st, msg, _ = run("plug-in-tinct-colorize", img, [photo])
REPORT["group"] = {"status": st, "msg": msg, "top": layer_names(img),
                   "children": [l.get_name() for l in group.get_children()]}

# Bad input: no layer selected
img = load(WORK + "/photo.png")
img.set_selected_layers([])
st, msg, _ = run("plug-in-tinct-colorize", img, [])
REPORT["nolayer"] = {"status": st, "msg": msg, "layers": layer_names(img)}

# Bad input: indexed image
img = Gimp.Image.new(64, 48, Gimp.ImageBaseType.INDEXED)
lay = Gimp.Layer.new(img, "indexed", 64, 48, Gimp.ImageType.INDEXED_IMAGE, 100.0, Gimp.LayerMode.NORMAL)
img.insert_layer(lay, None, 0)
st, msg, _ = run("plug-in-tinct-colorize", img, [lay])
REPORT["indexed"] = {"status": st, "msg": msg, "layers": layer_names(img)}

# Bad input: a fully transparent hint layer -> automatic, with a notice
img = load(WORK + "/photo.png")
photo = img.get_layers()[0]
run("plug-in-tinct-add-hint-layer", img, [photo])
st, msg, _ = run("plug-in-tinct-colorize", img, [photo])
REPORT["emptyhint"] = {"status": st, "msg": msg, "layers": layer_names(img)}

# Bad input: a hint layer from another image
other = load(WORK + "/photo.png")
run("plug-in-tinct-add-hint-layer", other, [other.get_layers()[0]])
foreign = [l for l in other.get_layers() if l.get_name() == "Tinct hints"][0]
img = load(WORK + "/photo.png")
photo = img.get_layers()[0]
st, msg, _ = run("plug-in-tinct-colorize", img, [photo], hint_layer=foreign)
REPORT["foreign"] = {"status": st, "msg": msg, "layers": layer_names(img)}

# Bad input: a photo larger than the engine's limit (100 MP); tiles are never touched
img = Gimp.Image.new(10240, 10240, Gimp.ImageBaseType.RGB)
big = Gimp.Layer.new(img, "big", 10240, 10240, Gimp.ImageType.RGB_IMAGE, 100.0, Gimp.LayerMode.NORMAL)
img.insert_layer(big, None, 0)
st, msg, _ = run("plug-in-tinct-colorize", img, [big])
REPORT["big"] = {"status": st, "msg": msg, "layers": layer_names(img)}
'''


@pytest.fixture(scope="module")
def cases_run(gimp):
    rep, out, took = gimp.batch(CASES)
    print("cases batch: %.1fs" % took)
    assert rep["_done"] and "exception" not in rep, rep.get("exception", out[-3000:])
    rep["_out"] = out
    return rep


def test_gray_image_converted_in_same_run(cases_run):
    g = cases_run["gray"]
    assert cases_run["gray_base_before"] == "gray"
    assert g["status"] == "success", g["msg"]
    assert g["base"] == "rgb"
    assert [l["name"] for l in g["layers"]] == ["Tinct color", "Background"]
    assert g["same"], "the gray values of the photo changed"


def test_offset_layer(cases_run):
    o = cases_run["offset"]
    assert o["status"] == "success", o["msg"]
    top, photo = o["layers"][0], o["layers"][1]
    assert top["name"] == "Tinct color"
    assert (top["x"], top["y"], top["w"], top["h"]) == (50, 40, photo["w"], photo["h"])


def test_rgba_photo_with_transparency(cases_run):
    r = cases_run["rgba"]
    assert r["status"] == "success", r["msg"]
    assert r["same"] and r["alpha_equal"]


def test_16bit_image(cases_run):
    r = cases_run["u16"]
    assert r["status"] == "success", r["msg"]
    assert r["precision"].startswith("u16")
    assert r["bpp"] == 8, "the result layer is not RGBA u16"
    assert r["same"]


@pytest.mark.parametrize("case,words", [
    ("nolayer", "No layer is selected"),
    ("indexed", "indexed"),
    ("foreign", "another image"),
    ("big", "megapixels"),
])
def test_bad_input_clear_message_document_unchanged(cases_run, case, words):
    r = cases_run[case]
    assert r["status"] == "execution-error"
    assert words in r["msg"]
    expected = {"nolayer": ["Background"], "indexed": ["indexed"], "foreign": ["Background"], "big": ["big"]}
    assert r["layers"] == expected[case]


def test_photo_inside_a_group(cases_run):
    g = cases_run["group"]
    assert g["status"] == "success", g["msg"]
    assert g["top"] == ["group"] and g["children"] == ["Tinct color", "Background"]


def test_reference_and_selection_instances(cases_run):
    assert cases_run["ref_file"]["status"] == "success", cases_run["ref_file"]["msg"]
    assert cases_run["ref_layer"]["status"] == "success", cases_run["ref_layer"]["msg"]
    assert cases_run["ref_layer"]["layers"] == ["Tinct reference", "Tinct color", "Background"]
    assert cases_run["nosel"]["status"] == "execution-error" and "from selection" in cases_run["nosel"]["msg"]
    assert cases_run["nosel"]["layers"] == ["Background"]
    assert cases_run["sel"]["status"] == "success", cases_run["sel"]["msg"]


def test_empty_hint_layer_colorizes_automatically(cases_run):
    r = cases_run["emptyhint"]
    assert r["status"] == "success", r["msg"]
    assert r["layers"] == ["Tinct hints", "Tinct color", "Background"]
    assert "empty, so the photo was colorized automatically" in cases_run["_out"]


DOWN = r'''
img = load(WORK + "/photo.png")
photo = img.get_layers()[0]
before = native(photo)
st, msg, _ = run("plug-in-tinct-colorize", img, [photo])
REPORT["down"] = {"status": st, "msg": msg, "layers": [l.get_name() for l in img.get_layers()],
                  "same": native(photo) == before}
st, msg, _ = run("plug-in-tinct-colorize", img, [photo])
REPORT["after"] = {"status": st, "msg": msg, "layers": [l.get_name() for l in img.get_layers()]}
'''


def test_engine_stopped_errors_cleanly(gimp):
    env = gimp.engine.stopped_env()
    rep, out, took = gimp.batch(DOWN, env=env)
    assert rep["_done"] and "exception" not in rep, rep.get("exception", out[-3000:])
    down = rep["down"]
    if gimp.engine.autostarts:
        # the real client autostarts the engine from the recorded command: the run recovers
        assert down["status"] == "success", down["msg"]
    else:
        assert down["status"] == "execution-error"
        assert "engine" in down["msg"]
        assert down["layers"] == ["Background"] and down["same"]


AGAIN = r"""
img = load(WORK + "/photo.png")
photo = img.get_layers()[0]
st, msg, _ = run("plug-in-tinct-colorize-again", img, [photo])
REPORT["again"] = {"status": st, "msg": msg, "layers": [l.get_name() for l in img.get_layers()]}
"""


def test_colorize_again_uses_the_last_settings(gimp):
    with open(gimp.host_path("last.json"), "w") as fh:
        fh.write('{"size": 128, "instances": "none", "device": "cpu"}')
    rep, out, took = gimp.batch(AGAIN, env={"TINCT_SETTINGS": gimp.chroot_path("last.json")})
    assert rep["_done"] and "exception" not in rep, rep.get("exception", out[-3000:])
    assert rep["again"]["status"] == "success", rep["again"]["msg"]
    assert rep["again"]["layers"] == ["Tinct color", "Background"]
    options = gimp.engine.last_options()
    if options is not None:
        assert options["size"] == 128 and options["instances"] == "none"


DIALOG = r"""
img = load(WORK + "/photo.png")
photo = img.get_layers()[0]
proc = PDB.lookup_procedure("plug-in-tinct-colorize")
cfg = proc.create_config()
cfg.set_property("run-mode", Gimp.RunMode.INTERACTIVE)
cfg.set_property("image", img)
cfg.set_core_object_array("drawables", [photo])
vals = proc.run(cfg)
REPORT["dialog"] = {"status": vals.index(0).value_nick, "layers": [l.get_name() for l in img.get_layers()]}
"""


def _interactive(gimp, body, windows, env=None):
    """Run a batch under Xvfb, pressing Return in each window title of `windows` in turn."""
    display = ":%d" % (70 + os.getpid() % 20)
    xvfb = subprocess.Popen(["chroot", gimp.root, "/usr/bin/Xvfb", display, "-screen", "0", "1024x768x24",
                             "-nolisten", "tcp"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seen = []

    def press_ok():
        x = ["chroot", gimp.root, "/usr/bin/env", "-i", "DISPLAY=" + display, "PATH=/usr/bin:/bin"]
        for title in windows:
            found = subprocess.run(x + ["timeout", "60", "xdotool", "search", "--sync", "--name", "^%s$" % title],
                                   stdout=subprocess.PIPE, universal_newlines=True).stdout.split()
            if not found:
                return
            seen.append(title)
            time.sleep(1.0)  # let it map and settle
            for _ in range(10):  # press Return until the dialog is gone (a press before it is ready is lost)
                subprocess.run(x + ["xdotool", "windowfocus", "--sync", found[0]])
                subprocess.run(x + ["xdotool", "key", "--window", found[0], "Return"])
                time.sleep(1.5)
                still = subprocess.run(x + ["xdotool", "search", "--name", "^%s$" % title], stdout=subprocess.PIPE,
                                       universal_newlines=True).stdout.split()
                if found[0] not in still:
                    break

    try:
        time.sleep(0.5)
        t = threading.Thread(target=press_ok, daemon=True)
        t.start()
        full_env = {"DISPLAY": display}
        full_env.update(env or {})
        rep, out, took = gimp.batch(body, env=full_env, timeout=150)
        t.join(10)
    finally:
        xvfb.terminate()
        xvfb.wait(10)
    assert rep["_done"] and "exception" not in rep, rep.get("exception", out[-3000:])
    assert seen == list(windows), "dialogs seen: %s\n%s" % (seen, out[-2000:])
    return rep


def test_colorize_dialog_ok(gimp):
    """Interactive Colorize: the dialog opens (Xvfb), OK (Return) runs it and saves the last settings."""
    rep = _interactive(gimp, DIALOG, ["Tinct: Colorize"], {"TINCT_SETTINGS": gimp.chroot_path("dlg.json")})
    assert rep["dialog"]["status"] == "success"
    assert rep["dialog"]["layers"] == ["Tinct color", "Background"]
    assert os.path.isfile(gimp.host_path("dlg.json")), "the dialog's settings were not saved for Colorize again"


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


def test_indexed_image_offer_to_convert(gimp):
    rep = _interactive(gimp, INDEXED_OFFER, ["Tinct: Colorize", "Tinct: indexed image"],
                       {"TINCT_SETTINGS": gimp.chroot_path("dlg2.json")})
    assert rep["base_before"] == "indexed"
    assert rep["offer"]["status"] == "success"
    assert rep["offer"]["base"] == "rgb" and rep["offer"]["layers"] == ["Tinct color", "Background"]


CANCEL = r"""
img = load(WORK + "/photo.png")
photo = img.get_layers()[0]
before = native(photo)
st, msg, _ = run("plug-in-tinct-colorize", img, [photo])
REPORT["cancel"] = {"status": st, "msg": msg, "layers": [l.get_name() for l in img.get_layers()],
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


def test_cancel_mid_run_leaves_document_unchanged(gimp):
    """GIMP's Cancel on a plug-in's progress ends the plug-in; Tinct changes nothing before the engine
    has answered, so the document is exactly as it was."""
    if not hasattr(gimp.engine, "stall"):
        pytest.skip("needs an engine that can be stalled")
    arrived = gimp.engine.stall(20)
    killed = []

    def cancel():
        if arrived.wait(60):
            for pid in _plugin_pids(gimp.root):
                os.kill(pid, 9)
                killed.append(pid)

    t = threading.Thread(target=cancel, daemon=True)
    t.start()
    try:
        rep, out, took = gimp.batch(CANCEL)
    finally:
        gimp.engine.stall(0)
    t.join(5)
    assert killed, "the plug-in process was not found"
    assert rep["_done"] and "exception" not in rep, rep.get("exception", out[-3000:])
    assert rep["cancel"]["status"] != "success"
    assert rep["cancel"]["layers"] == ["Background"] and rep["cancel"]["same"]


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
run("plug-in-tinct-add-hint-layer", img, [photo])
hints = img.get_layers()[0]
write(hints, 150, 160, 5, 5, bytes([255, 30, 30, 255]) * 25)
st, msg, _ = run("plug-in-tinct-colorize", img, [hints], size=128)
REPORT["run2"] = {"status": st, "msg": msg, "layers": [l.get_name() for l in img.get_layers()],
                  "changed": read([l for l in img.get_layers() if l.get_name() == "Tinct color"][0]) != first}
wait_undo(1)   # Edit > Undo once: the second Colorize
REPORT["undo1"] = {"layers": [l.get_name() for l in img.get_layers()],
                   "restored": read([l for l in img.get_layers() if l.get_name() == "Tinct color"][0]) == first}
img.remove_layer([l for l in img.get_layers() if l.get_name() == "Tinct hints"][0])
Gimp.displays_flush()
wait_undo(2)   # undo the removal of the hint layer
wait_undo(3)   # undo Add Hint Layer
wait_undo(4)   # undo the first Colorize (with its GRAY -> RGB conversion)
REPORT["undo4"] = {"layers": [l.get_name() for l in img.get_layers()], "base": img.get_base_type().value_nick,
                   "same": native(photo) == before}
disp.delete()
"""


def test_one_undo_restores_the_document(gimp):
    """In GIMP's GUI (Xvfb), Edit > Undo (Ctrl+Z) once takes back a whole Colorize run."""
    display = ":%d" % (50 + os.getpid() % 20)
    xvfb = subprocess.Popen(["chroot", gimp.root, "/usr/bin/Xvfb", display, "-screen", "0", "1280x1024x24",
                             "-nolisten", "tcp"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    x = ["chroot", gimp.root, "/usr/bin/env", "-i", "DISPLAY=" + display, "PATH=/usr/bin:/bin"]
    pressed = []

    def undoer():
        for n in (1, 2, 3, 4):
            t0 = time.time()
            while not os.path.exists(gimp.host_path("ready-%d" % n)):
                if time.time() - t0 > 120:
                    return
                time.sleep(0.1)
            win = None
            for _ in range(50):
                ids = subprocess.run(x + ["xdotool", "search", "--name", "GIMP$"], stdout=subprocess.PIPE,
                                     universal_newlines=True).stdout.split()
                for i in ids:
                    name = subprocess.run(x + ["xdotool", "getwindowname", i], stdout=subprocess.PIPE,
                                          universal_newlines=True).stdout
                    if "layer" in name:  # the image window: "[Untitled]-1.0 (RGB color ..., 2 layers) ..."
                        win = i
                if win:
                    break
                time.sleep(0.2)
            if win is None:
                break
            subprocess.run(x + ["xdotool", "windowfocus", "--sync", win])
            time.sleep(0.3)
            subprocess.run(x + ["xdotool", "key", "--window", win, "ctrl+z"])
            pressed.append(n)
            open(gimp.host_path("undone-%d" % n), "w").close()
        for n in (1, 2, 3, 4):  # never leave the batch waiting
            open(gimp.host_path("undone-%d" % n), "a").close()

    try:
        time.sleep(0.5)
        t = threading.Thread(target=undoer, daemon=True)
        t.start()
        rep, out, took = gimp.batch(UNDO, env={"DISPLAY": display}, timeout=200, gui=True)
        t.join(10)
    finally:
        xvfb.terminate()
        xvfb.wait(10)
    assert rep["_done"] and "exception" not in rep, rep.get("exception", out[-3000:])
    assert pressed == [1, 2, 3, 4], "could not drive Edit > Undo:\n" + out[-2000:]
    assert rep["run1"]["status"] == "success" and rep["run1"]["base"] == "rgb"
    assert rep["run2"]["status"] == "success" and rep["run2"]["changed"]
    assert rep["undo1"]["layers"] == ["Tinct hints", "Tinct color", "Background"]
    assert rep["undo1"]["restored"], "one undo did not bring back the previous result"
    assert rep["undo4"]["layers"] == ["Background"]
    assert rep["undo4"]["base"] == "gray" and rep["undo4"]["same"]
