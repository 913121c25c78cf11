"""The shared GIMP-side core (plugin/tinct_core): roles, pixels, settings, request building,
and its Python 2.7 compatibility (vermin)."""

import json
import os
import shutil
import subprocess
import sys
from array import array

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "plugin"))

from tinct_core import pixels, roles, settings as tsettings  # noqa: E402
from tinct_core.engine import EngineBridge, build_request  # noqa: E402
from tinct_core.errors import TinctCancelled, TinctUserError  # noqa: E402
from tinct_core.job import Plan  # noqa: E402
from tinct_core.roles import LayerInfo  # noqa: E402


def L(name, **kw):
    kw.setdefault("width", 10)
    kw.setdefault("height", 10)
    return LayerInfo(name, name, **kw)


# --- roles -------------------------------------------------------------------------------

def test_photo_is_the_selected_layer_or_the_one_below_a_tinct_layer():
    stack = [L("Tinct hints"), L("Tinct color"), L("photo"), L("Tinct hints 2"), L("old")]
    assert roles.find_photo(stack, [stack[2]]).name == "photo"
    assert roles.find_photo(stack, [stack[0]]).name == "photo"
    assert roles.find_photo(stack, [stack[1]]).name == "photo"
    assert roles.find_photo(stack, [stack[3]]).name == "old"
    with pytest.raises(TinctUserError, match="No layer is selected"):
        roles.find_photo(stack, [])
    with pytest.raises(TinctUserError, match="no photo layer below"):
        roles.find_photo([L("Tinct hints")], [L("Tinct hints")])
    with pytest.raises(TinctUserError, match="layer group"):
        roles.find_photo(stack, [L("g", is_group=True)])


def test_hint_layers_visible_bottom_first_and_result_layer():
    stack = [L("Tinct hints top"), L("Tinct hints off", visible=False), L("Tinct color"), L("Tinct hints"),
             L("photo"), L("Tinct color")]
    assert [h.name for h in roles.hint_layers(stack)] == ["Tinct hints", "Tinct hints top"]
    assert roles.result_layer(stack, stack[4]) is stack[2]
    only = [L("photo")]
    assert roles.result_layer(only, only[0]) is None
    # a Tinct color layer separated from the photo by a foreign layer belongs to someone else
    stack2 = [L("Tinct color"), L("other"), L("photo")]
    assert roles.result_layer(stack2, stack2[2]) is None


def test_offsets_and_overlap():
    photo = L("photo", x=10, y=20, width=100, height=50)
    assert roles.relative_offset(L("h", x=15, y=18), photo) == (5, -2)
    assert roles.overlaps(L("h", x=105, y=65, width=10, height=10), photo)
    assert not roles.overlaps(L("h", x=110, y=20, width=10, height=10), photo)
    assert not roles.overlaps(L("h", x=0, y=0, width=10, height=20), photo)


# --- pixels ------------------------------------------------------------------------------

def test_split_and_add_alpha_round_trip_8_and_16_bits():
    rgba = pixels.Pixels(bytes(bytearray(range(24))), 3, 2, 4, 8)
    color, alpha = pixels.split_alpha(rgba)
    assert color.channels == 3 and alpha == bytes(bytearray([3, 7, 11, 15, 19, 23]))
    assert pixels.add_alpha(color, alpha).data == rgba.data
    words = array("H", range(1000, 1016))
    p16 = pixels.Pixels(words.tobytes(), 2, 2, 4, 16)
    c16, a16 = pixels.split_alpha(p16)
    assert array("H", a16).tolist() == [1003, 1007, 1011, 1015]
    assert pixels.add_alpha(c16, a16).data == p16.data


def test_convert_channels():
    gray = pixels.Pixels(b"\x00\x80\xff", 3, 1, 1, 8)
    rgba = pixels.convert_channels(gray, 4)
    assert rgba.data == b"\x00\x00\x00\xff\x80\x80\x80\xff\xff\xff\xff\xff"
    assert pixels.convert_channels(rgba, 1).data == gray.data
    g16 = pixels.Pixels(array("H", [0, 65535]).tobytes(), 2, 1, 1, 16)
    assert array("H", pixels.convert_channels(g16, 2).data).tolist() == [0, 65535, 65535, 65535]
    with pytest.raises(ValueError):
        pixels.Pixels(b"\x00", 2, 1, 1, 8)


def test_one_pixel_dot_counts_transparent_does_not():
    n = 64 * 64
    empty = bytearray(n * 4)
    assert pixels.alpha_is_empty(bytes(empty)) and pixels.count_painted(bytes(empty)) == 0
    empty[(20 * 64 + 33) * 4:(20 * 64 + 33) * 4 + 4] = b"\x00\x00\xff\x01"
    assert not pixels.alpha_is_empty(bytes(empty)) and pixels.count_painted(bytes(empty)) == 1
    # painted color with zero alpha is not a hint
    assert pixels.alpha_is_empty(b"\xff\x00\x00\x00" * 4)


def test_to_8bit():
    p = pixels.Pixels(array("H", [0, 257, 65535, 32896]).tobytes(), 2, 2, 1, 16)
    assert pixels.to_8bit(p).data == b"\x00\x01\xff\x80"


# --- settings ----------------------------------------------------------------------------

def test_settings_validation_and_rounding():
    s = tsettings.Settings(size=250, opacity=50)
    assert s.size == 248 and s.opacity == 50.0
    for bad in (dict(instances="some"), dict(reference="web"), dict(device="tpu"), dict(size=10),
                dict(size="big"), dict(opacity=101), dict(reference="file")):
        with pytest.raises(TinctUserError):
            tsettings.Settings(**bad)


def test_last_settings_saved_and_loaded(tmp_path, monkeypatch):
    path = str(tmp_path / "sub" / "last.json")
    monkeypatch.setenv("TINCT_SETTINGS", path)
    assert tsettings.load_last().to_dict() == tsettings.Settings().to_dict()
    assert tsettings.save_last(tsettings.Settings(instances="none", size=512, device="cpu"))
    again = tsettings.load_last()
    assert (again.instances, again.size, again.device) == ("none", 512, "cpu")
    assert tsettings.save_last(tsettings.Settings(size=128))
    assert tsettings.load_last().size == 128
    with open(path, "w") as fh:
        fh.write("{broken")
    assert tsettings.load_last().size == tsettings.SIZE_DEFAULT
    with open(path, "w") as fh:
        json.dump({"size": 5}, fh)
    assert tsettings.load_last().size == tsettings.SIZE_DEFAULT


# --- request / reply ---------------------------------------------------------------------

def _plan():
    plan = Plan()
    plan.photo = L("photo", width=4, height=2)
    plan.photo_pixels = pixels.Pixels(b"\x10" * 8, 4, 2, 1, 8)
    plan.hints = [(pixels.Pixels(b"\x00" * 16, 2, 2, 4, 8), 1, -1, 0.5)]
    plan.bits = 8
    return plan


def test_build_request_raw_bytes_offsets_opacity():
    req = build_request(_plan(), tsettings.Settings(size=128, instances="none"))
    assert req["photo"] == {"data": b"\x10" * 8, "width": 4, "height": 2, "channels": 1, "dtype": "uint8"}
    assert req["hints"][0]["x"] == 1 and req["hints"][0]["y"] == -1 and req["hints"][0]["opacity"] == 0.5
    assert req["options"]["size"] == 128 and req["options"]["instances"] == "none"
    assert req["options"]["render"] == 8 and req["reference"] is None and req["instances"] is None


class _Client(object):
    def __init__(self, reply=None, exc=None):
        self.reply, self.exc = reply, exc

    def colorize(self, **kw):
        if self.exc:
            raise self.exc
        return self.reply


def test_bridge_reply_and_errors():
    plan = _plan()
    reply = {"rgb": {"data": b"\x01\x02\x03" * 8, "width": 4, "height": 2, "dtype": "uint8"}, "info": {"x": 1}}
    rgb, info = EngineBridge(_Client(reply)).colorize(plan, tsettings.Settings())
    assert (rgb.width, rgb.height, rgb.channels, rgb.bits) == (4, 2, 3, 8) and info == {"x": 1}
    with pytest.raises(TinctUserError, match="no RGB"):
        EngineBridge(_Client({"ab": b""})).colorize(plan, tsettings.Settings())
    with pytest.raises(TinctUserError, match="refused"):
        EngineBridge(_Client(exc=IOError("refused"))).colorize(plan, tsettings.Settings())

    class CancelledError(Exception):
        pass
    with pytest.raises(TinctCancelled):
        EngineBridge(_Client(exc=CancelledError())).colorize(plan, tsettings.Settings())


class _Hello(object):
    """A client whose hello() answers (or raises) and records whether colorize ran."""

    def __init__(self, hello=None, exc=None, autostart=True):
        self._hello, self.exc, self.autostart, self.calls = hello, exc, autostart, []

    def hello(self):
        self.calls.append("hello")
        if self.exc:
            raise self.exc
        return self._hello


def test_bridge_asks_the_engine_for_its_limit_and_reports_unreachable_plainly():
    assert EngineBridge(_Hello({"device": "cpu", "max_pixels": 1234})).max_pixels() == 1234
    client = _Hello({"device": "cpu"})
    client.max_pixels = 99
    assert EngineBridge(client).max_pixels() == 99

    class EngineUnavailable(Exception):
        pass
    bridge = EngineBridge(_Hello(exc=EngineUnavailable("No Tinct engine is running at unix:/x (refused).")))
    with pytest.raises(TinctUserError) as err:
        bridge.max_pixels()
    assert str(err.value) == "No Tinct engine is running at unix:/x (refused). The image was not changed."
    with pytest.raises(TinctUserError, match=r"^Tinct: the engine failed \(OSError\)\. The image was not changed\.$"):
        EngineBridge(_Hello(exc=OSError())).max_pixels()


def test_bridge_reply_of_wrong_size_is_refused_before_the_document_changes():
    from tinct_core.job import apply_result

    class NoTouch(object):
        def __getattr__(self, name):
            raise AssertionError("the document was touched: %s" % name)
    plan = _plan()
    wrong = pixels.Pixels(b"\x00" * 9, 3, 1, 3, 8)
    with pytest.raises(TinctUserError, match="3x1 result for a 4x2 photo"):
        apply_result(NoTouch(), plan, wrong, tsettings.Settings())


def test_notices_for_what_the_engine_did_not_use():
    from tinct_core.job import colorize

    class Host(object):
        def __init__(self):
            self.messages, self.progress_calls = [], []
            self.layer = L("photo", width=4, height=2)

        def base_type(self):
            return "GRAY"

        def layers(self):
            return [self.layer]

        def selected(self):
            return [self.layer]

        def image_id(self):
            return 1

        def precision_bits(self):
            return 8

        def read_pixels(self, layer, channels, bits):
            return pixels.Pixels(b"\x10" * 8 * channels, 4, 2, channels, 8)

        def progress(self, fraction, text=None):
            self.progress_calls.append((fraction, text))

        def message(self, text):
            self.messages.append(text)

        def __getattr__(self, name):  # undo groups, conversions, layer placement: recorded no-ops
            return lambda *a, **k: L("Tinct color", width=4, height=2)

    class Engine(object):
        def max_pixels(self):
            return None

        def colorize(self, plan, settings, progress, cancel):
            progress(0.5, "Colorizing")
            return pixels.Pixels(b"\x01" * 24, 4, 2, 3, 8), {"ignored": ["damage mask: no restoration step yet"]}

    host = Host()
    colorize(host, tsettings.Settings(), Engine())
    assert host.messages == ["Tinct: the engine did not use: damage mask: no restoration step yet."]
    fractions = [f for f, _ in host.progress_calls]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    texts = [t for _, t in host.progress_calls if t]
    assert texts == ["Tinct: connecting to the engine", "Tinct: reading the photo", "Tinct: colorizing",
                     "Tinct: Colorizing", "Tinct: placing the result", "Tinct: done"]


# --- Python 2.7 ----------------------------------------------------------------------------

def test_plugin_runs_on_python_27_and_3():
    """`vermin -t=2.7- -t=3.6- --violations plugin` is clean: the core, the client and the gimpfu
    plug-in on GIMP 2.10's Python 2.7, everything on Python 3.6+ (vermin is a test dependency)."""
    vermin = shutil.which("vermin") or pytest.fail("vermin is missing: pip install -e '.[test]'")
    out = subprocess.run([vermin, "-t=2.7-", "-t=3.6-", "--violations", "--no-tips", os.path.join(ROOT, "plugin")],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
    assert out.returncode == 0, out.stdout
    assert "Analyzing" in out.stdout or "Minimum required" in out.stdout, out.stdout
