"""Interactive... in the GIMP 2.10 adapter (gimpfu stubs, tests/stubs) and tinct_core/interactive.py:
the photo and its hint dots reach the window as files `tinct ui` reads, Apply places the points as
the `Tinct hints` layer and the colors as `Tinct color` inside one outer undo group, Cancel changes
nothing. The window itself is the real `tinct ui --apply-points` (its Apply, scripted); its page
is tested in a browser by tests/test_ui.py, and GIMP 3's menu item in the chroot (tests/gimp)."""

import json
import sys

import numpy as np

from engine.imageio import load_image
from engine.ui.points import points_from_hints
from tests.test_plugin_gimp2 import engine, gf, hint_layer, make_image, names, plugin  # noqa: F401 (fixtures)

CHANGES = ("insert_layer", "remove_layer", "convert_rgb", "convert_grayscale", "rgn_set", "set_offsets")


def check_in_one_undo_group(gf, img):
    """Every change lies between the first undo_group_start and the last undo_group_end (GIMP merges
    the nested group of the color layer's placement into it): one Edit > Undo takes it all back."""
    kinds = [c[0] for c in gf.CALLS]
    start = kinds.index("undo_group_start")
    end = len(kinds) - 1 - kinds[::-1].index("undo_group_end")
    for i, c in enumerate(gf.CALLS):
        if c[0] in CHANGES:
            assert start < i < end, "%s outside the undo group" % (c,)
    assert img.undo_depth == 0


def dots(layer):
    """[(x, y, (r, g, b))] of the layer's painted pixels."""
    buf = np.frombuffer(bytes(layer.buffer), np.uint8).reshape(layer.height, layer.width, 4)
    ys, xs = np.nonzero(buf[..., 3])
    return sorted((int(x), int(y), tuple(int(v) for v in buf[y, x, :3])) for y, x in zip(ys, xs))


def test_apply_places_the_points_and_the_colors_in_one_undo_group(plugin, gf, engine, tmp_path, monkeypatch):
    img, photo = make_image(gf)
    old = hint_layer(gf, img, dots=[(3, 4, (255, 0, 0, 255))])
    points = tmp_path / "points.json"
    points.write_text(json.dumps([{"x": 10, "y": 12, "rgb": [20, 160, 40]}, {"x": 3, "y": 4, "rgb": [255, 0, 0]}]))
    monkeypatch.setattr(plugin, "window_command", lambda _cmd: [sys.executable, "-m", "engine", "ui"])
    monkeypatch.setattr(engine, "start_command", lambda: ["python", "-m", "engine", "serve"], raising=False)
    gf.reset()
    plugin.tinct_interactive(img, photo, str(points))
    assert names(img) == ["Tinct hints", "Tinct color", "Background"], [str(c) for c in gf.CALLS][-5:]
    assert img.layers[0] is not old
    assert dots(img.layers[0]) == [(3, 4, (255, 0, 0)), (10, 12, (20, 160, 40))]
    request = engine.requests[-1]
    assert len(request["hints"]) == 1   # the points, not the replaced layer
    check_in_one_undo_group(gf, img)


def test_the_window_gets_the_photo_and_one_point_per_painted_dot(plugin, gf, engine, monkeypatch):
    img, photo = make_image(gf)
    blob = [(x, y, (0, 0, 255, 255)) for x in (20, 21, 22) for y in (8, 9, 10)]
    hint_layer(gf, img, dots=blob + [(5, 25, (200, 100, 0, 255))])
    seen = {}

    def window(command, photo_path, hints_path, result_path, points_path=None):
        seen["photo"] = load_image(photo_path)
        pts = points_from_hints(load_image(hints_path))   # what `tinct ui --hints` opens with
        return [{"x": x, "y": y, "rgb": list(rgb)} for x, y, rgb in pts]   # Apply, unchanged

    monkeypatch.setattr(plugin, "run_window", window)
    monkeypatch.setattr(engine, "start_command", lambda: ["python", "-m", "engine", "serve"], raising=False)
    gf.reset()
    plugin.tinct_interactive(img, photo)
    gray = np.frombuffer(bytes(photo.buffer), np.uint8).reshape(30, 40, 3)
    assert np.array_equal(seen["photo"], gray)
    assert names(img) == ["Tinct hints", "Tinct color", "Background"]
    assert dots(img.layers[0]) == [(5, 25, (200, 100, 0)), (21, 9, (0, 0, 255))]
    check_in_one_undo_group(gf, img)


def test_cancel_leaves_the_image_as_it_was(plugin, gf, engine, monkeypatch):
    img, photo = make_image(gf)
    hint_layer(gf, img, dots=[(3, 4, (255, 0, 0, 255))])
    layers = list(img.layers)
    monkeypatch.setattr(plugin, "run_window", lambda *a: None)
    monkeypatch.setattr(engine, "start_command", lambda: ["python", "-m", "engine", "serve"], raising=False)
    gf.reset()
    requests = len(engine.requests)
    plugin.tinct_interactive(img, photo)
    assert img.layers == layers and len(engine.requests) == requests
    assert not [c for c in gf.CALLS if c[0] in CHANGES + ("undo_group_start",)]


def test_a_window_stopped_by_ctrl_c_at_any_moment_counts_as_cancelled(tmp_path):
    """Ctrl+C (GIMP closing the window) can land while `tinct ui` is still starting or exiting, where
    Python ends with a bare KeyboardInterrupt traceback and exit status 1: that is a cancel, not a
    failure; any other failure still says why."""
    import pytest

    from tinct_core.errors import TinctUserError
    from tinct_core.interactive import run_window

    args = [str(tmp_path / f) for f in ("photo.png", "hints.png", "result.json")]
    interrupted = [sys.executable, "-c", "import sys; sys.stderr.write('Traceback ...\\nKeyboardInterrupt\\n'); "
                                         "sys.exit(1)"]
    assert run_window(interrupted, *args) is None
    broken = [sys.executable, "-c", "import sys; sys.stderr.write('tinct: error: no such photo\\n'); sys.exit(2)"]
    with pytest.raises(TinctUserError, match="no such photo"):
        run_window(broken, *args)
