"""The plug-in's engine client (plugin/tinct_core/client.py + config.py) against real engines.

Covers finding the engine (config + env, the same rules as the engine), autostart,
a SIGKILLed engine, cancel, the wrong token, TCP, the plug-in's EngineBridge, the
command line's --engine path, and the Python 2.7 compatibility of the client.
"""

import json
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from tests.helpers import EXAMPLES, ROOT
from tests.test_server_support import Engine, alive, gray_photo

from tinct_core import client as tc  # noqa: E402  (plugin/ is on sys.path via test_server_support)
from tinct_core import config as tconfig  # noqa: E402


def as_image(arr, **fields):
    """The plug-in's image dict for a numpy array."""
    h, w = arr.shape[:2]
    d = {"data": arr.tobytes(), "width": w, "height": h, "channels": 1 if arr.ndim == 2 else arr.shape[2],
         "dtype": arr.dtype.name}
    d.update(fields)
    return d


def rgb_of(result):
    rgb = result["rgb"]
    return np.frombuffer(rgb["data"], dtype=rgb["dtype"]).reshape(rgb["height"], rgb["width"], 3)


@pytest.fixture(scope="module")
def engine():
    e = Engine().start()
    yield e
    e.stop()


@pytest.fixture
def home():
    """A private engine home with nothing running (for autostart tests)."""
    e = Engine()
    yield e
    e.stop()


def test_client_and_config_pass_vermin_for_python_2_7_and_3():
    files = [os.path.join(ROOT, "plugin", "tinct_core", n) for n in ("client.py", "config.py")]
    run_vermin = "import sys, vermin; sys.argv[0] = 'vermin'; sys.exit(vermin.main())"
    r = subprocess.run([sys.executable, "-c", run_vermin, "-t=2.7-", "-t=3.6-", "--violations", "--no-tips"] + files,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr


def test_client_uses_only_the_standard_library():
    import ast

    for name in ("client.py", "config.py"):
        tree = ast.parse(open(os.path.join(ROOT, "plugin", "tinct_core", name)).read())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                mods = [node.module]
            else:
                continue
            for mod in mods:
                top = mod.split(".")[0]
                assert top in sys.stdlib_module_names or top == "__future__", (name, mod)


@pytest.mark.parametrize("env", [
    {},
    {"TINCT_SOCKET": "/tmp/x/e.sock"},
    {"TINCT_PORT": "47999"},
    {"TINCT_SOCKET": "/tmp/x/e.sock", "TINCT_PORT": "47999", "TINCT_TOKEN_FILE": "/tmp/x/tok"},
    {"FILE": {"port": 40001, "token_file": "/tmp/y/tok"}},
    {"FILE": {"port": 40001}, "TINCT_SOCKET": "/tmp/z.sock"},
    {"FILE": {"socket": "/tmp/f.sock"}, "TINCT_PORT": "0"},
])
def test_client_and_engine_find_the_same_address_and_token(env, home):
    from engine.server import paths

    env = dict(env)
    with open(home.config_path, "w") as fh:
        json.dump(env.pop("FILE", {}), fh)
    with home.environ():
        os.environ.update(env)
        cfg = tconfig.load()
        transport, address, token = paths.resolve()
    assert cfg.transport == transport and cfg.token_file == token
    assert (tuple(cfg.address()) if transport == "tcp" else cfg.address()) == (
        tuple(address) if transport == "tcp" else address)
    if not env and transport == "unix":
        assert address == home.socket_path and token == home.token_file


def test_config_errors_name_the_file_and_the_problem(home):
    with open(home.config_path, "w") as fh:
        fh.write("{not json")
    with pytest.raises(tconfig.ConfigError, match="engine.json: not valid JSON"):
        tconfig.load(home.config_path)
    with open(home.config_path, "w") as fh:
        json.dump({"host": "192.168.1.5", "port": 5000}, fh)
    with pytest.raises(tconfig.ConfigError, match="not this machine"):
        tconfig.load(home.config_path)
    with open(home.config_path, "w") as fh:
        json.dump({"port": "eighty"}, fh)
    with pytest.raises(tconfig.ConfigError, match="port must be a number"):
        tconfig.load(home.config_path)


def test_round_trip_with_hint_layers_reference_and_progress(engine):
    from engine.hints import compose_hint_layers
    from engine.pipeline import Colorizer

    photo = gray_photo(120, 160, seed=3)
    layer = np.zeros((30, 40, 4), np.uint8)
    layer[10:14, 10:14] = (30, 200, 60, 255)
    full = np.zeros((120, 160, 4), np.uint8)
    full[100:104, 20:24] = (200, 30, 200, 180)
    reference = np.zeros((64, 64, 3), np.uint8)
    reference[..., 0] = 200
    seen = []
    c = engine.client()
    result = c.colorize(photo=as_image(photo), hints=[as_image(layer, x=-5, y=70, opacity=0.5), as_image(full)],
                        reference=as_image(reference), options={"size": 96, "render": 8},
                        progress=lambda f, m: seen.append((f, m)))
    hints = compose_hint_layers([(layer, -5, 70, 0.5), (full, 0, 0, 1.0)], 120, 160)
    want = Colorizer().colorize(photo, hints=hints, reference=reference, size=96).render(8)
    np.testing.assert_array_equal(rgb_of(result), want)
    assert result["info"]["hint_cells"] >= 2 and result["info"]["reference"] is True
    assert seen and all(0 <= f <= 1 for f, _ in seen) and seen[-1][0] == pytest.approx(1.0)
    assert [f for f, _ in seen] == sorted(f for f, _ in seen)
    assert c.max_pixels >= 100_000_000 and c.device in ("cpu", "cuda")


def test_numpy_arrays_and_16_bit_and_ab_outputs(engine):
    photo = (gray_photo(64, 48).astype(np.uint16) * 257)
    res = engine.client().colorize(photo=photo, options={"render": 16, "ab": "float32"})
    assert res["rgb"]["dtype"] == "uint16" and rgb_of(res).shape == (64, 48, 3)
    ab = np.frombuffer(res["ab"]["data"], np.float32).reshape(64, 48, 2)
    assert np.isfinite(ab).all() and res["ab"]["channels"] == 2


def test_plugin_engine_bridge_runs_a_plan_through_the_real_client(engine):
    from tinct_core.engine import EngineBridge
    from tinct_core.pixels import Pixels

    gray = gray_photo(50, 70)
    dot = np.zeros((8, 8, 4), np.uint8)
    dot[2:5, 2:5] = (0, 0, 255, 255)
    scratch = np.zeros((10, 10, 4), np.uint8)
    scratch[..., 3] = 255

    class Plan(object):
        photo_pixels = Pixels(gray.tobytes(), 70, 50, 1, 8)
        photo = photo_pixels
        hints = [(Pixels(dot.tobytes(), 8, 8, 4, 8), 20, 20, 1.0)]
        reference = None
        damage = (Pixels(scratch.tobytes(), 10, 10, 4, 8), 0, 0)
        instances = []
        bits = 8

    class Settings(object):
        size = 64
        device = "auto"
        instances = "auto"

    client = engine.client()
    bridge = EngineBridge(client)
    assert bridge.device() in ("cpu", "cuda")
    rgb, info = bridge.colorize(Plan(), Settings())
    assert (rgb.width, rgb.height, rgb.channels, rgb.bits) == (70, 50, 3, 8)
    assert len(rgb.data) == 70 * 50 * 3
    assert info["device"] in ("cpu", "cuda")
    used = client.last_hello["features"]["damage"]
    assert any("damage" in note for note in info.get("ignored", [])) != used  # reported when not used


def test_bad_input_reaches_the_caller_as_a_named_refusal(engine):
    c = engine.client()
    with pytest.raises(tc.EngineRefused, match="hint layer 1 is 10x10 but the photo is 32x32 and no offset was given"):
        c.colorize(photo=gray_photo(32, 32), hints=[np.zeros((10, 10, 4), np.uint8)], options={"render": 8})
    with pytest.raises(tc.EngineRefused, match="too small"):
        c.colorize(photo=gray_photo(8, 8), options={"render": 8})
    with pytest.raises(tc.EngineError, match="has 3 bytes of pixels but 2x2"):
        c.colorize(photo={"data": b"abc", "width": 2, "height": 2, "channels": 1, "dtype": "uint8"})
    assert c.colorize(photo=gray_photo(32, 32), options={"render": 8})["rgb"]["width"] == 32


def test_cancel_stops_a_running_request_and_the_engine_serves_on(engine):
    c = engine.client()
    started = threading.Event()
    with pytest.raises(tc.EngineCancelled):
        c.colorize(photo=gray_photo(1500, 2000), options={"render": 8},
                   progress=lambda f, m: started.set(), cancel=started.is_set)
    assert c.colorize(photo=gray_photo(32, 32), options={"render": 8})["rgb"]["height"] == 32


def test_wrong_token_in_the_token_file_is_refused_with_a_clear_message(engine):
    good = engine.token
    try:
        with open(engine.token_file, "w") as fh:
            fh.write("deadbeef" * 8)
        with pytest.raises(tc.EngineRefused, match="wrong token"):
            engine.client(autostart=False).hello()
    finally:
        with open(engine.token_file, "w") as fh:
            fh.write(good)
    assert engine.client().hello()["protocol"] == 1


def test_autostart_starts_an_engine_that_outlives_the_call(home):
    with home.environ():
        c = tc.EngineClient(timeout=60, start_timeout=60)   # no arguments, as the plug-in does
        res = c.colorize(photo=as_image(gray_photo(40, 40)), options={"render": 8})
    assert rgb_of(res).shape == (40, 40, 3)
    pid = home.pid_from_lock()
    assert pid and c.started_engine is not None and c.started_engine.pid == pid and alive(pid)
    assert os.path.exists(home.socket_path)
    assert open(home.log_path).read().count("serving on") == 1
    with home.environ():
        assert tc.EngineClient().hello()["pid"] == pid  # the next call reuses it


def test_sigkill_mid_request_gives_a_clear_error_then_the_next_call_autostarts(home):
    c = home.client()
    c.hello()  # autostarts
    first = home.pid_from_lock()

    def kill_on_first_progress(fraction, message):
        if alive(first):
            os.kill(first, signal.SIGKILL)

    with pytest.raises(tc.EngineConnectionLost, match="stopped while working on the photo"):
        c.colorize(photo=gray_photo(800, 1000), options={"render": 8}, progress=kill_on_first_progress)
    deadline = time.time() + 10
    while alive(first) and time.time() < deadline:
        time.sleep(0.05)
    assert not alive(first)
    assert os.path.exists(home.socket_path)  # the dead engine's socket is still there: stale
    res = home.client().colorize(photo=gray_photo(40, 40), options={"render": 8})
    assert rgb_of(res).shape == (40, 40, 3)
    second = home.pid_from_lock()
    assert second != first and alive(second)


def test_no_engine_and_no_command_is_a_clear_error(home):
    with open(home.config_path, "w") as fh:
        json.dump({}, fh)
    with home.environ():
        c = tc.EngineClient()
        with pytest.raises(tc.EngineUnavailable, match="records no command to start one"):
            c.hello()
        with pytest.raises(tc.EngineUnavailable, match="No Tinct engine is running"):
            c.status()


def test_an_engine_that_cannot_start_is_reported_with_its_own_words(home):
    with open(home.config_path, "w") as fh:
        json.dump({"command": [sys.executable, "-m", "engine", "serve", "--model", "/nonexistent.onnx"]}, fh)
    with pytest.raises(tc.EngineUnavailable, match="did not start: tinct: error: model file /nonexistent.onnx"):
        home.client().hello()


def test_tcp_port_on_localhost(home):
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    home.env["TINCT_PORT"] = str(port)
    home.start()
    assert "on 127.0.0.1:%d" % port in home.ready
    with home.environ():
        os.environ["TINCT_PORT"] = str(port)
        c = tc.EngineClient(autostart=False)
        assert c.config.transport == "tcp"
        assert rgb_of(c.colorize(photo=gray_photo(32, 32), options={"render": 8})).shape == (32, 32, 3)
    assert not os.path.exists(home.socket_path)


def test_command_line_colorize_engine_autostarts_and_matches_in_process(home, tmp_path):
    src = os.path.join(EXAMPLES, "great_wall_bw.png")
    hints = os.path.join(EXAMPLES, "great_wall_hints.png")

    def tinct(*args):
        return subprocess.run([sys.executable, "-m", "engine"] + list(args), env=home.env, cwd=ROOT,
                              capture_output=True, text=True, timeout=120)

    r = tinct("colorize", src, "--hints", hints, "-o", str(tmp_path / "e.png"), "--engine")
    assert r.returncode == 0, r.stderr
    assert "by the engine at unix:%s" % home.socket_path in r.stdout
    r = tinct("colorize", src, "--hints", hints, "-o", str(tmp_path / "p.png"))
    assert r.returncode == 0, r.stderr
    from engine.imageio import load_image

    np.testing.assert_array_equal(load_image(str(tmp_path / "e.png")), load_image(str(tmp_path / "p.png")))
    r = tinct("colorize", src, "-o", str(tmp_path / "n.png"), "--engine", "--instances", "none")
    assert r.returncode == 0 and os.path.exists(tmp_path / "n.png"), r.stderr
    r = tinct("colorize", src, "--engine", "--model", "x.onnx")
    assert r.returncode == 2 and "--model cannot be combined with --engine" in r.stderr
    # a damage mask: the engine restores it like the in-process pipeline does
    from PIL import Image

    h, w = load_image(src).shape[:2]
    mask = np.zeros((h, w), np.uint8)
    mask[h // 2, w // 4:w // 2] = 255
    Image.fromarray(mask).save(str(tmp_path / "dmg.png"))
    outs = []
    for name, extra in (("de.png", ["--engine"]), ("dp.png", [])):
        r = tinct("colorize", src, "--damage", str(tmp_path / "dmg.png"), "-o", str(tmp_path / name), *extra)
        assert r.returncode == 0 and "%d damaged pixels restored" % (w // 2 - w // 4) in r.stdout, r.stderr
        outs.append(load_image(str(tmp_path / name)))
    np.testing.assert_array_equal(outs[0], outs[1])
    assert not np.array_equal(outs[1], load_image(str(tmp_path / "p.png")))
