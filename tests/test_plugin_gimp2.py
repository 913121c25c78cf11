"""The GIMP 2.10 (gimpfu) plug-in against recording gimpfu stubs (tests/stubs/gimpfu.py)."""

import importlib.util
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STUBS = os.path.join(ROOT, "tests", "stubs")
PLUGIN = os.path.join(ROOT, "plugin", "tinct_gimp2", "tinct_gimp2.py")


@pytest.fixture(scope="module")
def gf():
    sys.path.insert(0, STUBS)
    try:
        import gimpfu
        yield gimpfu
    finally:
        sys.path.remove(STUBS)


@pytest.fixture(scope="module")
def plugin(gf):
    spec = importlib.util.spec_from_file_location("tinct_gimp2_under_test", PLUGIN)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture
def engine(plugin, monkeypatch, tmp_path, gf):
    sys.path.insert(0, STUBS)
    from fake_engine import FakeClient
    from tinct_core.engine import EngineBridge
    sys.path.remove(STUBS)
    client = FakeClient()
    monkeypatch.setattr(plugin, "EngineBridge", lambda: EngineBridge(client=client))
    monkeypatch.setenv("TINCT_SETTINGS", str(tmp_path / "last.json"))
    gf.reset()
    return client


def make_image(gf, w=40, h=30, base=None, precision="u8-gamma", alpha=False, offsets=(0, 0), canvas=None):
    base = gf.RGB if base is None else base
    img = gf.Image(*(canvas or (w, h)), base_type=base, precision=precision)
    if base == gf.GRAY:
        typ = gf.GRAYA_IMAGE if alpha else gf.GRAY_IMAGE
    else:
        typ = gf.RGBA_IMAGE if alpha else gf.RGB_IMAGE
    photo = gf.Layer(img, "Background", w, h, typ)
    bps = photo.bytes_per_sample
    ch = photo.channels
    buf = bytearray()
    for y in range(h):
        for x in range(w):
            v = (x * 6 + y * 3) % 256
            px = bytearray([v] * (ch - (1 if alpha else 0)) + ([0 if y < 5 else 255] if alpha else []))
            buf += bytes(bytearray(b for b in px for _ in range(bps)))
    photo.buffer = buf
    photo.offsets = offsets
    img.add_layer(photo)
    return img, photo


def hint_layer(gf, img, name="Tinct hints", w=None, h=None, offsets=None, dots=(), opacity=100.0, position=0):
    photo = img.layers[-1]
    layer = gf.Layer(img, name, w or photo.width, h or photo.height, gf.RGBA_IMAGE, opacity)
    layer.offsets = offsets or photo.offsets
    for (x, y, rgba) in dots:
        i = (y * layer.width + x) * 4
        layer.buffer[i:i + 4] = bytearray(rgba)
    img.add_layer(layer, position)
    return layer


def names(img):
    return [l.name for l in img.layers]


def check_one_undo_group(gf, img):
    """Every change sits inside exactly one balanced undo group."""
    kinds = [c[0] for c in gf.CALLS]
    assert kinds.count("undo_group_start") == 1 and kinds.count("undo_group_end") == 1
    start, end = kinds.index("undo_group_start"), kinds.index("undo_group_end")
    for i, c in enumerate(gf.CALLS):
        if c[0] in ("insert_layer", "remove_layer", "convert_rgb", "convert_grayscale", "rgn_set", "set_offsets"):
            assert start < i < end, "%s outside the undo group" % (c,)
    assert img.undo_depth == 0


def test_registers_procedures_and_menus(plugin, gf):
    procs = gf.PROCEDURES
    assert set(procs) == {"plug-in-tinct-colorize", "plug-in-tinct-colorize-again", "plug-in-tinct-add-hint-layer",
                          "plug-in-tinct-add-damage-mask", "plug-in-tinct-detect-damage",
                          "plug-in-tinct-interactive"}
    assert all(p["menu"] == "<Image>/Filters/Colors/Tinct" for p in procs.values())
    assert procs["plug-in-tinct-colorize"]["label"] == "_Colorize..."
    params = [p[1] for p in procs["plug-in-tinct-colorize"]["params"]]
    assert params == ["image", "drawable", "instances", "reference", "reference_layer", "reference_file", "size",
                      "opacity", "device"]


def test_colorize_places_lch_layer_one_undo_group(plugin, gf, engine):
    img, photo = make_image(gf)
    before = img.state()
    original = bytes(photo.buffer)
    plugin.tinct_colorize(img, photo, size=128, opacity=80)
    assert gf.MESSAGES == []
    assert names(img) == ["Tinct color", "Background"]
    res = img.layers[0]
    assert res.mode == gf.LAYER_MODE_LCH_COLOR and res.opacity == 80.0
    assert (res.width, res.height, res.offsets) == (photo.width, photo.height, photo.offsets)
    assert bytes(photo.buffer) == original
    # R = gray, G = gray/2, B = gray/4 (the fake engine), opaque alpha
    assert bytes(res.buffer[:8]) == bytes(bytearray([original[0], original[0] // 2, original[0] // 4, 255,
                                                     original[3], original[3] // 2, original[3] // 4, 255]))
    req = engine.requests[0]
    assert req["photo"]["channels"] == 3 and req["photo"]["dtype"] == "uint8"
    assert req["options"]["size"] == 128 and req["hints"] == []
    check_one_undo_group(gf, img)
    fractions = [p[0] for p in gf.PROGRESS if p[0] is not None]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and len(set(fractions)) >= 4
    texts = [p[1] for p in gf.PROGRESS if p[1]]
    assert texts[0] == "Tinct: connecting to the engine" and "Tinct: Colorizing" in texts
    assert texts[-1] == "Tinct: done"
    img.undo()
    assert img.state() == before


def test_hints_offsets_opacity_order_and_one_pixel_dot(plugin, gf, engine):
    img, photo = make_image(gf, offsets=(10, 5), canvas=(80, 60))
    hint_layer(gf, img, "Tinct hints", dots=[(3, 4, (0, 0, 255, 255))])          # one pixel
    hint_layer(gf, img, "Tinct hints 2", w=8, h=6, offsets=(14, 9), opacity=50,
                      dots=[(1, 1, (255, 0, 0, 255))])
    hidden = hint_layer(gf, img, "Tinct hints hidden", dots=[(5, 5, (0, 255, 0, 255))])
    hidden.visible = False
    empty = hint_layer(gf, img, "Tinct hints empty")
    assert names(img)[-1] == "Background"
    plugin.tinct_colorize(img, photo)
    hints = engine.requests[0]["hints"]
    assert [(h["x"], h["y"], h["width"], h["height"], h["opacity"]) for h in hints] == \
        [(0, 0, 40, 30, 1.0), (4, 4, 8, 6, 0.5)]
    assert hints[0]["data"][(4 * 40 + 3) * 4:(4 * 40 + 3) * 4 + 4] == b"\x00\x00\xff\xff"
    assert gf.MESSAGES == []  # some hint layers are empty, but not all
    # the result goes directly above the photo, below the hint layers
    assert names(img) == ["Tinct hints empty", "Tinct hints hidden", "Tinct hints 2", "Tinct hints",
                          "Tinct color", "Background"]
    del empty


def test_selected_tinct_layer_means_the_photo_below(plugin, gf, engine):
    img, photo = make_image(gf)
    hl = hint_layer(gf, img, dots=[(1, 1, (0, 0, 255, 255))])
    plugin.tinct_colorize(img, hl)
    assert engine.requests and engine.requests[0]["photo"]["width"] == photo.width
    assert names(img) == ["Tinct hints", "Tinct color", "Background"]


def test_rerun_replaces_and_keeps_opacity_visibility(plugin, gf, engine):
    img, photo = make_image(gf)
    plugin.tinct_colorize(img, photo)
    res = img.layers[0]
    res.opacity, res.visible = 35.0, False
    gf.reset()
    state = img.state()
    plugin.tinct_colorize(img, photo, opacity=100)
    assert names(img) == ["Tinct color", "Background"]
    new = img.layers[0]
    assert new.opacity == 35.0 and new.visible is False and new.mode == gf.LAYER_MODE_LCH_COLOR
    check_one_undo_group(gf, img)
    img.undo()
    assert img.state() == state and img.layers[0] is res


def test_gray_image_converted_inside_the_group(plugin, gf, engine):
    img, photo = make_image(gf, base=gf.GRAY)
    before = img.state()
    gray = bytes(photo.buffer)
    plugin.tinct_colorize(img, photo)
    assert img.base_type == gf.RGB
    assert engine.requests[0]["photo"]["channels"] == 1
    assert bytes(photo.buffer[0::3]) == gray
    check_one_undo_group(gf, img)
    img.undo()
    assert img.state() == before


def test_rgba_photo_alpha_carried_and_offsets(plugin, gf, engine):
    img, photo = make_image(gf, alpha=True, offsets=(7, 3), canvas=(60, 50))
    plugin.tinct_colorize(img, photo)
    res = img.layers[0]
    assert res.offsets == (7, 3)
    assert engine.requests[0]["photo"]["channels"] == 3
    assert bytes(res.buffer[3::4]) == bytes(photo.buffer[3::4])


def test_16bit_image(plugin, gf, engine):
    img, photo = make_image(gf, precision="u16-gamma")
    original = bytes(photo.buffer)
    plugin.tinct_colorize(img, photo)
    assert engine.requests[0]["photo"]["dtype"] == "uint16"
    assert engine.requests[0]["options"]["render"] == 16
    res = img.layers[0]
    assert len(res.buffer) == photo.width * photo.height * 8
    assert bytes(photo.buffer) == original


def test_engine_failure_leaves_document_unchanged(plugin, gf, engine):
    img, photo = make_image(gf, base=gf.GRAY)
    before = img.state()
    engine.fail = IOError("cannot reach the Tinct engine")
    plugin.tinct_colorize(img, photo)
    assert img.state() == before
    assert gf.MESSAGES and "engine" in gf.MESSAGES[0]
    assert not [c for c in gf.CALLS if c[0] == "undo_group_start"]


def test_failure_while_placing_rolls_back(plugin, gf, engine, monkeypatch):
    img, photo = make_image(gf, base=gf.GRAY)
    before = img.state()

    def broken(self, layer, pixels):
        raise RuntimeError("disk full")
    monkeypatch.setattr(plugin.Gimp2Host, "write_pixels", broken)
    plugin.tinct_colorize(img, photo)
    assert img.state() == before
    assert "disk full" in gf.MESSAGES[0]
    assert img.undo_depth == 0


@pytest.mark.parametrize("case", ["nolayer", "indexed", "foreign", "big", "emptyhint"])
def test_bad_input(plugin, gf, engine, case):
    img, photo = make_image(gf)
    drawable = photo
    kwargs = {}
    if case == "nolayer":
        img.active_layer = None
        drawable = None
    elif case == "indexed":
        img.base_type = gf.INDEXED
    elif case == "foreign":
        other, _ = make_image(gf)
        kwargs["hint_layer"] = hint_layer(gf, other, dots=[(1, 1, (255, 0, 0, 255))])
    elif case == "big":
        engine.max_pixels = 1000
    elif case == "emptyhint":
        hint_layer(gf, img)
    before = img.state()
    if kwargs:
        plugin._run(img, drawable, plugin.tsettings.Settings(), **kwargs)
    else:
        plugin.tinct_colorize(img, drawable)
    msg = gf.MESSAGES[0] if gf.MESSAGES else ""
    expect = {"nolayer": "No layer is selected", "indexed": "Image > Mode > RGB", "foreign": "another image",
              "big": "megapixels", "emptyhint": "colorized automatically"}[case]
    assert expect in msg
    if case == "emptyhint":
        assert names(img) == ["Tinct hints", "Tinct color", "Background"]
        assert engine.requests[0]["hints"] == []
    else:
        assert img.state() == before and not engine.requests


def test_selection_instances(plugin, gf, engine):
    img, photo = make_image(gf, offsets=(2, 2), canvas=(50, 40))
    sel = img.selection
    for y in range(4, 8):
        for x in range(4, 10):
            sel.buffer[y * sel.width + x] = 255
    plugin.tinct_colorize(img, photo, instances=2)
    inst = engine.requests[0]["instances"]
    assert len(inst) == 1 and inst[0]["width"] == photo.width
    assert inst[0]["data"][2 * photo.width + 2] == 255 and inst[0]["data"][0] == 0
    assert engine.requests[0]["options"]["instances"] == "selection"
    gf.reset()
    img2, photo2 = make_image(gf)
    plugin.tinct_colorize(img2, photo2, instances=2)
    assert "from selection" in gf.MESSAGES[0]


def test_reference_layer(plugin, gf, engine):
    img, photo = make_image(gf)
    ref = gf.Layer(img, "Tinct reference", 10, 8, gf.RGB_IMAGE)
    ref.buffer = bytearray(b"\x10\x80\xf0" * 80)
    img.add_layer(ref, 0)
    plugin.tinct_colorize(img, photo, reference=1)
    r = engine.requests[0]["reference"]
    assert (r["width"], r["height"], r["channels"]) == (10, 8, 3) and r["data"][:3] == b"\x10\x80\xf0"


def test_colorize_again_uses_last_settings(plugin, gf, engine):
    img, photo = make_image(gf)
    plugin.tinct_colorize(img, photo, size=320, device=1)
    plugin.tinct_colorize_again(img, photo)
    assert [r["options"]["size"] for r in engine.requests] == [320, 320]
    assert engine.requests[1]["options"]["device"] == "cpu"


def test_add_hint_layer_and_damage_mask(plugin, gf, engine):
    img, photo = make_image(gf, base=gf.GRAY, offsets=(3, 4), canvas=(50, 40))
    plugin.tinct_colorize(img, photo)
    gf.reset()
    layer = plugin.tinct_add_hint_layer(img, photo)
    assert names(img) == ["Tinct hints", "Tinct color", "Background"]
    assert img.active_layer is layer and layer.has_alpha and not any(layer.buffer[3::4])
    assert layer.offsets == (3, 4) and (layer.width, layer.height) == (photo.width, photo.height)
    dmg = plugin.tinct_add_damage_mask(img, photo)
    assert dmg.name == "Tinct damage" and img.active_layer is dmg

    img2, photo2 = make_image(gf, base=gf.GRAY)
    gf.reset()
    plugin.tinct_add_hint_layer(img2, photo2)
    assert img2.base_type == gf.RGB and img2.layers[0].type == gf.RGBA_IMAGE
    check_one_undo_group(gf, img2)


def test_restored_damage_gets_its_own_normal_layer_under_the_color(plugin, gf, engine):
    img, photo = make_image(gf, offsets=(10, 5), canvas=(80, 60))
    original = bytes(photo.buffer)
    hint_layer(gf, img, "Tinct damage", w=6, h=4, offsets=(12, 8), dots=[(1, 1, (255, 255, 255, 255)),
                                                                         (5, 3, (9, 9, 9, 40))])
    before = img.state()
    plugin.tinct_colorize(img, photo)
    assert gf.MESSAGES == []
    assert names(img) == ["Tinct damage", "Tinct color", "Tinct restored", "Background"]
    color, restored = img.layers[1], img.layers[2]
    assert color.mode == gf.LAYER_MODE_LCH_COLOR and restored.mode == gf.LAYER_MODE_NORMAL
    assert (restored.width, restored.height, restored.offsets) == (photo.width, photo.height, photo.offsets)
    # opaque exactly where the damage layer is painted, in photo coordinates: (12+1-10, 8+1-5), (12+5-10, 8+3-5)
    alpha = restored.buffer[3::4]
    assert [(i % photo.width, i // photo.width) for i, a in enumerate(alpha) if a] == [(3, 4), (7, 6)]
    assert set(alpha) == {0, 255}
    i = (4 * photo.width + 3) * 4
    assert restored.buffer[i:i + 3] == color.buffer[i:i + 3]  # the engine's rendering there
    assert bytes(photo.buffer) == original
    check_one_undo_group(gf, img)
    # a re-run replaces both layers, keeping the user's choices
    restored.visible = False
    gf.reset()
    plugin.tinct_colorize(img, photo)
    assert names(img) == ["Tinct damage", "Tinct color", "Tinct restored", "Background"]
    assert img.layers[2].visible is False and img.layers[2] is not restored
    check_one_undo_group(gf, img)
    img.undo()
    img.undo()
    assert img.state() == before


@pytest.mark.parametrize("precision,ok", [(150, 8), (250, 16), (650, 8), (550, 8), (200, None), (100, None),
                                          ("float-linear", None)])
def test_gimp2_precisions(plugin, gf, engine, precision, ok):
    """GIMP 2.10 gives plug-ins 8-bit pixels unless they enable precision: Tinct enables it for 16-bit
    gamma (16-bit request and result), works in 8 bits on other perceptual precisions, and refuses
    linear light with a message."""
    img, photo = make_image(gf, precision="u16-gamma" if ok == 16 else "u8-gamma")
    img.precision = precision
    original = bytes(photo.buffer)
    plugin.tinct_colorize(img, photo)
    enabled = ("enable_precision",) in gf.CALLS
    if ok:
        assert engine.requests[0]["photo"]["dtype"] == ("uint8" if ok == 8 else "uint16")
        assert engine.requests[0]["options"]["render"] == ok
        assert enabled == (ok == 16)
        assert gf.MESSAGES == [] and names(img) == ["Tinct color", "Background"]
        res = img.layers[0]
        assert len(res.buffer) == photo.width * photo.height * 4 * (2 if ok == 16 else 1)
        if ok == 16:  # the 16-bit result went in untruncated: R = the photo's 16-bit gray
            assert bytes(res.buffer[0:2]) == original[0:2]
    else:
        assert "Image > Precision > Perceptual gamma" in gf.MESSAGES[0] and names(img) == ["Background"]
        assert not engine.requests
    assert bytes(photo.buffer) == original


def test_gimp2_16bit_compat_pixels_when_precision_is_not_enabled(gf):
    """The stub itself: without enable_precision a 16-bit drawable reads as 8-bit samples (GIMP 2.10)."""
    gf.reset()
    img = gf.Image(2, 1, precision="u16-gamma")
    layer = img.add_layer(gf.Layer(img, "l", 2, 1, gf.GRAY_IMAGE))
    layer.buffer = bytearray([0x00, 0x00, 0xff, 0xff])
    rgn = layer.get_pixel_rgn(0, 0, 2, 1, False, False)
    assert rgn.bpp == 1 and rgn[0:2, 0:1] == b"\x00\xff"
    gf.pdb.gimp_plugin_enable_precision()
    assert layer.get_pixel_rgn(0, 0, 2, 1, False, False)[0:2, 0:1] == b"\x00\x00\xff\xff"
    gf.reset()


def _white_scratch(gf, img, photo, x, y0, y1):
    """Paint a white vertical scratch into the photo (gray 255: what the fake engine flags)."""
    ch, bps = photo.channels, photo.bytes_per_sample
    for y in range(y0, y1):
        i = (y * photo.width + x) * ch * bps
        photo.buffer[i:i + (ch - photo.has_alpha) * bps] = b"\xff" * ((ch - photo.has_alpha) * bps)


@pytest.mark.parametrize("gray", [False, True])
def test_detect_damage_adds_the_layer_in_one_undo_group(plugin, gf, engine, gray):
    img, photo = make_image(gf, base=gf.GRAY if gray else None, offsets=(3, 4), canvas=(50, 40))
    _white_scratch(gf, img, photo, 7, 2, 12)
    gf.reset()
    layer = plugin.tinct_detect_damage(img, photo)
    assert names(img) == ["Tinct damage", "Background"] and img.active_layer is layer
    assert layer.offsets == (3, 4) and (layer.width, layer.height) == (photo.width, photo.height)
    assert layer.type == (gf.GRAYA_IMAGE if gray else gf.RGBA_IMAGE) and img.base_type == (gf.GRAY if gray else gf.RGB)
    c = layer.channels
    alpha = layer.buffer[c - 1::c]
    flagged = [i for i, a in enumerate(alpha) if a]
    gray = photo.buffer[0::photo.channels * photo.bytes_per_sample]
    assert flagged == [i for i, v in enumerate(gray) if v >= 250]
    assert set(y * photo.width + 7 for y in range(2, 12)) <= set(flagged)
    check_one_undo_group(gf, img)


def test_detect_damage_keeps_what_the_user_painted_and_fails_cleanly(plugin, gf, engine):
    img, photo = make_image(gf, offsets=(3, 4), canvas=(50, 40))
    _white_scratch(gf, img, photo, 7, 2, 12)
    user = hint_layer(gf, img, "Tinct damage", w=10, h=6, offsets=(20, 20), dots=[(1, 1, (0, 255, 0, 255))])
    user.opacity = 40.0
    gf.reset()
    layer = plugin.tinct_detect_damage(img, photo, 0.3)
    assert engine.requests[-1]["threshold"] == 0.3
    assert names(img) == ["Tinct damage", "Background"] and layer is not user
    # the user's layer (its own size and offset) is kept, with its paint and opacity; the scratch (photo
    # x 7 = image x 10) lies left of it (image x 20..29), so nothing is added
    assert (layer.width, layer.height, layer.offsets, layer.opacity) == (10, 6, (20, 20), 40.0)
    assert layer.buffer[(1 * 10 + 1) * 4:(1 * 10 + 1) * 4 + 4] == bytearray([0, 255, 0, 255])
    assert sum(1 for a in layer.buffer[3::4] if a) == 1
    check_one_undo_group(gf, img)

    engine.fail = RuntimeError("engine down")
    gf.reset()
    assert plugin.tinct_detect_damage(img, photo) is None
    assert names(img) == ["Tinct damage", "Background"] and img.layers[0] is layer
    assert any("engine down" in str(c) for c in gf.CALLS)

