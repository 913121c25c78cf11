"""`tinct serve` against a real engine process on a real Unix socket, spoken to by hand.

One engine serves the module (short read timeout and a small frame limit so the
bad-frame cases are quick); tests that need their own engine start one.
"""

import os
import socket
import stat
import struct
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from tests.helpers import ROOT
from tests.test_server_support import (Engine, closed_by_peer, frame, gray_photo, hello, image_frame, read_reply,
                                       read_until)

MAX_FRAME_MB = 64


@pytest.fixture(scope="module")
def engine():
    e = Engine().start("--read-timeout", "1", "--max-frame-mb", str(MAX_FRAME_MB))
    yield e
    e.stop()


def greeted(engine):
    s = engine.connect()
    hello(s, engine.token)
    return s


def test_hello_reports_protocol_engine_device_and_model(engine):
    s = engine.connect()
    h = hello(s, engine.token, rid=7)
    from engine import __version__

    assert h["id"] == 7 and h["protocol"] == 1 and h["engine"] == __version__
    assert h["device"] in ("cpu", "cuda") and h["models"][0]["file"] == "tinct-lite0.onnx"
    assert h["max_pixels"] >= 100_000_000 and h["max_frame_bytes"] == MAX_FRAME_MB * 1_000_000
    assert set(h["features"]) == {"damage", "instances", "detect_damage"}
    assert engine.ready.startswith("tinct engine ready on unix:%s" % engine.socket_path)
    s.close()


def test_socket_token_and_folders_are_user_only(engine):
    def mode(p):
        return stat.S_IMODE(os.stat(p).st_mode)

    assert stat.S_ISSOCK(os.stat(engine.socket_path).st_mode)
    assert mode(engine.socket_path) == 0o600
    assert mode(os.path.dirname(engine.socket_path)) == 0o700
    assert mode(engine.token_file) == 0o600
    assert mode(os.path.dirname(engine.token_file)) == 0o700
    assert len(engine.token) == 64 and int(engine.token, 16) >= 0


def test_colorize_result_matches_the_in_process_pipeline_with_offset_hints_and_reference(engine):
    from engine.hints import compose_hint_layers
    from engine.pipeline import Colorizer

    photo = gray_photo(96, 128)
    dot = np.zeros((10, 12, 4), np.uint8)
    dot[3:6, 4:8] = (220, 40, 30, 255)
    full = np.zeros((96, 128, 4), np.uint16)
    full[60:64, 100:104] = (0, 30000, 60000, 65535)
    reference = np.zeros((40, 50, 3), np.uint8)
    reference[..., 1] = 180
    s = greeted(engine)
    s.sendall(image_frame(engine.token, 1, photo, hints=[(dot, {"x": 30, "y": -2, "opacity": 0.7}), (full, {})],
                          reference=reference, options={"render": 8, "ab": "float32", "size": 64}))
    h, bufs = read_until(s, 1)
    assert h["type"] == "result", h
    ab, rgb = bufs[h["ab"]["buffer"]], bufs[h["rgb"]["buffer"]]
    assert ab.dtype == np.float32 and ab.shape == (96, 128, 2)
    assert rgb.dtype == np.uint8 and rgb.shape == (96, 128, 3)
    hints = compose_hint_layers([(dot, 30, -2, 0.7), (full, 0, 0, 1.0)], 96, 128)
    want = Colorizer().colorize(photo, hints=hints, reference=reference, size=64)
    np.testing.assert_array_equal(rgb, want.render(8))
    np.testing.assert_allclose(ab, want.ab, atol=1e-4)
    assert h["info"]["reference"] is True and h["info"]["hint_cells"] >= 2
    s.close()


def test_result_outputs_follow_render_and_ab_options(engine):
    s = greeted(engine)
    s.sendall(image_frame(engine.token, "a", gray_photo(32, 40), options={}))
    h, bufs = read_until(s, "a")
    assert "rgb" not in h and bufs[h["ab"]["buffer"]].dtype == np.float16  # default: ab only, float16
    s.sendall(image_frame(engine.token, "b", gray_photo(32, 40), options={"render": 16}))
    h, bufs = read_until(s, "b")
    assert "ab" not in h and bufs[h["rgb"]["buffer"]].dtype == np.uint16
    s.close()


def test_four_concurrent_clients_all_get_their_own_result(engine):
    photos = [gray_photo(64 + 8 * i, 80, seed=i) for i in range(4)]
    results = [None] * 4

    def one(i):
        s = greeted(engine)
        s.sendall(image_frame(engine.token, i, photos[i], options={"render": 8, "size": 64}))
        results[i] = read_until(s, i, timeout=60)
        s.close()

    threads = [threading.Thread(target=one, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    from engine.pipeline import Colorizer

    c = Colorizer()
    for i, r in enumerate(results):
        assert r is not None and r[0]["type"] == "result" and r[0]["id"] == i, r
        np.testing.assert_array_equal(r[1][0], c.colorize(photos[i], size=64).render(8))


def test_requests_queue_fairly_between_connections(engine):
    """A connection with 4 queued requests does not make a later one from another connection wait for all 4."""
    batch = greeted(engine)
    other = greeted(engine)
    photo = gray_photo(1500, 2000)  # big enough that the batch is still queued when "gimp" arrives
    for i in range(4):
        batch.sendall(image_frame(engine.token, i, photo, options={"render": 8}))
    time.sleep(0.3)
    other.sendall(image_frame(engine.token, "gimp", gray_photo(40, 40), options={"render": 8}))
    order = []
    lock = threading.Lock()

    def collect(sock, ids):
        for rid in ids:
            r = read_until(sock, rid, timeout=90)
            with lock:
                order.append(r[0]["id"])

    ts = [threading.Thread(target=collect, args=(batch, range(4))), threading.Thread(target=collect, args=(other, ["gimp"]))]
    for t in ts:
        t.start()
    for t in ts:
        t.join(120)
    assert sorted(order, key=str) == sorted([0, 1, 2, 3, "gimp"], key=str)
    assert order.index("gimp") <= 2, order  # at most the running request and one more of the batch go first


def test_stalled_and_non_reading_clients_do_not_block_others(engine):
    stalled = greeted(engine)
    stalled.sendall(image_frame(engine.token, 1, gray_photo(64, 64))[:40])  # half a frame, then silence
    hog = greeted(engine)
    hog.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    hog.sendall(image_frame(engine.token, 1, gray_photo(800, 1000), options={"render": 16, "ab": "float32"}))
    t0 = time.time()
    s = greeted(engine)
    for rid in range(3):
        s.sendall(image_frame(engine.token, rid, gray_photo(48, 48), options={"render": 8}))
        h, _ = read_until(s, rid, timeout=30)
        assert h["type"] == "result"
    assert time.time() - t0 < 30
    err, _ = read_reply(stalled, timeout=10)  # the stalled one is told why and dropped
    assert err["code"] == "timeout" and "middle of a frame" in err["message"]
    assert closed_by_peer(stalled)
    for sock in (s, hog, stalled):
        sock.close()


def test_wrong_or_missing_token_is_refused_and_the_connection_closed(engine):
    for token in ("0" * 64, None):
        s = engine.connect()
        header = {"type": "hello", "id": 1, "protocol": 1}
        if token:
            header["token"] = token
        s.sendall(frame(header))
        err, _ = read_reply(s)
        assert err["type"] == "error" and err["code"] == "unauthorized" and err["fatal"] is True
        assert ("wrong token" if token else "no token") in err["message"]
        assert closed_by_peer(s)
        s.close()
    s = greeted(engine)  # a correct hello, then a colorize with a wrong token
    s.sendall(image_frame("f" * 64, 2, gray_photo(32, 32)))
    err, _ = read_reply(s)
    assert err["code"] == "unauthorized"
    assert closed_by_peer(s)


def _valid_header(engine, **kw):
    h = {"type": "hello", "id": 1, "token": engine.token, "protocol": 1}
    h.update(kw)
    return h


BAD_FRAMES = {
    # name: (builder(engine) -> bytes, greet first?, expected code, words in the message)
    "bad magic": (lambda e: b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", False, "bad_frame", "not a Tinct frame"),
    "oversized frame": (lambda e: frame({"type": "colorize"}, payload_len=(MAX_FRAME_MB + 1) * 1_000_000), True,
                        "too_large", "over the engine's limit"),
    "oversized before hello": (lambda e: frame({"type": "hello"}, payload_len=5_000_000), False, "too_large",
                               "over the engine's limit"),
    "oversized header": (lambda e: struct.pack(">4sIQ", b"TNCT", 50_000_000, 0), False, "too_large",
                         "header of 50000000 bytes"),
    "bad json": (lambda e: frame(None, header_bytes=b"{'type': 'hello'"), False, "bad_json", "not valid JSON"),
    "json not an object": (lambda e: frame([1, 2]), False, "bad_json", "must be a JSON object"),
    "header not utf-8": (lambda e: frame(None, header_bytes=b'{"type": "\xff\xfe"}'), False, "bad_json", "UTF-8"),
    "deeply nested json": (lambda e: frame(None, header_bytes=b"[" * 100000 + b"]" * 100000), False, "bad_json",
                           "JSON"),
    "unknown message": (lambda e: frame(_valid_header(e, type="paint")), False, "unknown_message", "'paint'"),
    "payload length mismatch": (lambda e: frame(_valid_header(e), b"xyz"), False, "bad_length",
                                "payload is 3 bytes but the buffers in the header need 0"),
    "wire dtype": (lambda e: frame(_valid_header(e, type="colorize", photo={"buffer": 0},
                                                 buffers=[{"dtype": "int32", "shape": [2, 2]}]), b"\0" * 16),
                   True, "bad_dtype", "buffer 0 has dtype 'int32'"),
    "negative shape": (lambda e: frame(_valid_header(e, type="colorize", buffers=[{"dtype": "uint8", "shape": [-1, 4]}])),
                       True, "bad_shape", "buffer 0: shape [-1, 4]"),
    "photo dtype": (lambda e: image_frame(e.token, 1, np.zeros((32, 32), np.float16)), True, "bad_dtype",
                    "the photo is float16; it must be uint8 or uint16 or float32"),
    "photo shape": (lambda e: image_frame(e.token, 1, np.zeros((32, 32, 2), np.uint8)), True, "bad_shape",
                    "the photo has shape [32, 32, 2]"),
    "hint size without offset": (lambda e: image_frame(e.token, 1, np.zeros((768, 1024), np.uint8),
                                                       hints=[(np.zeros((32, 32, 4), np.uint8), {"x": 5, "y": 5}),
                                                              (np.zeros((480, 640, 4), np.uint8), {})]),
                                 True, "bad_shape",
                                 "hint layer 2 is 640x480 but the photo is 1024x768 and no offset was given"),
    "hint layer not rgba": (lambda e: image_frame(e.token, 1, np.zeros((32, 32), np.uint8),
                                                  hints=[(np.zeros((32, 32, 3), np.uint8), {})]), True, "bad_shape",
                            "hint layer 1 has shape [32, 32, 3]; hint layers are RGBA"),
    "unused buffer": (lambda e: frame(_valid_header(e, type="colorize", photo={"buffer": 0},
                                                    buffers=[{"dtype": "uint8", "shape": [16, 16]},
                                                             {"dtype": "uint8", "shape": [1]}]), b"\0" * 257),
                      True, "bad_request", "buffer 1 is not used"),
    "unknown option": (lambda e: image_frame(e.token, 1, np.zeros((32, 32), np.uint8), options={"sise": 9}), True,
                       "bad_request", "unknown option 'sise'"),
    "hello not first": (lambda e: frame(_valid_header(e, type="status")), False, "bad_request",
                        "first message on a connection must be hello"),
    "protocol version": (lambda e: frame(_valid_header(e, protocol=99)), False, "protocol_version",
                         "client speaks protocol 99 but this engine speaks 1"),
    "missing id": (lambda e: frame(_valid_header(e, id=None)), False, "bad_request", "needs an \"id\""),
}


@pytest.mark.parametrize("name", sorted(BAD_FRAMES))
def test_bad_frames_get_a_named_error_then_close_while_others_are_served(engine, name):
    build, greet, code, words = BAD_FRAMES[name]
    s = greeted(engine) if greet else engine.connect()
    try:
        s.sendall(build(engine))
    except (BrokenPipeError, ConnectionResetError):
        pass  # the engine refused before we finished sending; its error is still readable
    err, _ = read_reply(s, timeout=10)
    assert err["type"] == "error" and err["code"] == code and err["fatal"] is True, err
    assert words in err["message"], err["message"]
    assert "Traceback" not in err["message"] and "\n" not in err["message"]
    assert closed_by_peer(s)
    s.close()
    ok = greeted(engine)  # the engine serves on
    ok.close()


def test_truncated_frame_is_reported_when_the_client_closes_its_side(engine):
    s = greeted(engine)
    s.sendall(image_frame(engine.token, 1, gray_photo(64, 64))[:300])
    s.shutdown(socket.SHUT_WR)
    err, _ = read_reply(s, timeout=10)
    assert err["code"] == "truncated" and "closed after" in err["message"]
    s.close()


def test_engine_errors_are_replies_and_the_connection_stays_usable(engine):
    s = greeted(engine)
    s.sendall(image_frame(engine.token, 1, np.zeros((8, 8), np.uint8)))
    err, _ = read_until(s, 1)
    assert err["type"] == "error" and err["code"] == "engine" and err["fatal"] is False
    assert "too small" in err["message"]
    s.sendall(image_frame(engine.token, 2, gray_photo(32, 32), reference=np.zeros((20, 20, 3), np.uint8),
                          options={"method": "levin", "render": 8}))
    err, _ = read_until(s, 2)
    assert err["code"] == "engine" and "cannot use a reference" in err["message"]
    s.sendall(image_frame(engine.token, 3, gray_photo(32, 32)))
    h, _ = read_until(s, 3)
    assert h["type"] == "result"
    s.close()


def test_damage_and_instance_masks_are_validated_and_reported(engine):
    photo = gray_photo(40, 48)
    damage = np.zeros((10, 10), np.uint8)
    inst = np.zeros((40, 48), np.uint8)
    inst[5:20, 5:20] = 255
    s = greeted(engine)
    s.sendall(image_frame(engine.token, 1, photo, damage=(damage, {"x": 3, "y": 4}), instances=[(inst, {})],
                          options={"render": 8, "instances": "selection"}))
    h, _ = read_until(s, 1)
    assert h["type"] == "result"
    hello_features = hello(engine.connect(), engine.token)["features"]
    ignored = " ".join(h["info"].get("ignored", []))
    assert ("damage" in ignored) != hello_features["damage"]
    assert ("instance" in ignored) != hello_features["instances"]
    # an instance mask of the wrong size without an offset is refused by name
    s.sendall(image_frame(engine.token, 2, photo, damage=(damage, {"x": 3, "y": 4}),
                          instances=[(np.ascontiguousarray(inst[:, :47]), {})], options={"render": 8}))
    err, _ = read_until(s, 2)
    assert err["code"] == "bad_shape" and "instance mask 1 is 47x40" in err["message"]
    s.close()


def test_a_painted_damage_mask_is_restored_in_the_rendering(engine):
    """The shipped restoration model fills a white scratch before colorizing; the rendering shows it."""
    photo = gray_photo(96, 128)
    scratched = photo.copy()
    scratched[40:42, 10:110] = 255
    damage = np.zeros((4, 102, 4), np.uint8)  # a painted layer with an offset, like GIMP's
    damage[1:3, 1:101, 3] = 255
    s = greeted(engine)
    s.sendall(image_frame(engine.token, 1, scratched, damage=(damage, {"x": 9, "y": 39}), options={"render": 8}))
    h, bufs = read_until(s, 1)
    s.close()
    assert h["type"] == "result" and h["info"]["restored_pixels"] == 200
    gray = bufs[h["rgb"]["buffer"]].astype(float).mean(-1)
    err = np.abs(gray[40:42, 10:110] - photo[40:42, 10:110]).mean()
    assert err < 0.2 * np.abs(255.0 - photo[40:42, 10:110]).mean(), err


def test_cancel_a_queued_request(engine):
    s = greeted(engine)
    s.sendall(image_frame(engine.token, 1, gray_photo(600, 800), options={"render": 8}))
    s.sendall(image_frame(engine.token, 2, gray_photo(600, 800), options={"render": 8}))
    s.sendall(frame({"type": "cancel", "id": 3, "token": engine.token, "target": 2}))
    replies = {}
    while len(replies) < 2:
        h, _ = read_until(s, None, timeout=60)
        replies[h["id"]] = h
    assert replies[2]["type"] == "error" and replies[2]["code"] == "cancelled" and replies[2]["fatal"] is False
    assert replies[1]["type"] in ("result", "error")
    s.close()


def test_status_reports_queue_and_counters(engine):
    s = greeted(engine)
    s.sendall(frame({"type": "status", "id": 9, "token": engine.token}))
    st, _ = read_reply(s)
    assert st["type"] == "status" and st["pid"] == engine.proc.pid
    assert st["served"] >= 1 and st["connections"] >= 1 and st["rss_mb"] > 10
    s.close()


def test_second_engine_is_refused_by_the_lock(engine):
    r = subprocess.run([sys.executable, "-m", "engine", "serve"], env=engine.env, cwd=ROOT, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 2 and r.stdout == ""
    assert "already running (pid %d)" % engine.proc.pid in r.stderr
    assert "Traceback" not in r.stderr


def test_status_and_stop_commands_and_a_clean_stop():
    e = Engine().start()
    try:
        def tinct(*args):
            return subprocess.run([sys.executable, "-m", "engine"] + list(args), env=e.env, cwd=ROOT,
                                  capture_output=True, text=True, timeout=60)

        r = tinct("status")
        assert r.returncode == 0 and "pid %d" % e.proc.pid in r.stdout and "idle" in r.stdout
        r = tinct("stop")
        assert r.returncode == 0 and "stopped (pid %d" % e.proc.pid in r.stdout
        assert e.proc.wait(15) == 0
        assert not os.path.exists(e.socket_path) and not os.path.exists(e.token_file)
        r = tinct("status")
        assert r.returncode == 1 and "No Tinct engine is running" in r.stderr
        r = tinct("stop")
        assert r.returncode == 0 and "no engine is running" in r.stdout
    finally:
        e.stop()


def test_stale_socket_is_removed_open_folder_tightened_and_a_non_socket_refused():
    e = Engine()
    try:
        os.makedirs(os.path.dirname(e.socket_path))
        os.chmod(os.path.dirname(e.socket_path), 0o755)  # too open: tightened on start
        dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        dead.bind(e.socket_path)  # a socket file nobody listens on, as a killed engine leaves it
        dead.close()
        e.start()
        assert stat.S_IMODE(os.stat(os.path.dirname(e.socket_path)).st_mode) == 0o700
        s = e.connect()
        hello(s, e.token)
        s.close()
        e.stop()
        e = Engine()
        os.makedirs(os.path.dirname(e.socket_path), mode=0o700)
        open(e.socket_path, "w").close()
        r = subprocess.run([sys.executable, "-m", "engine", "serve"], env=e.env, cwd=ROOT, capture_output=True,
                           text=True, timeout=60)
        assert r.returncode == 2 and "exists and is not a socket" in r.stderr
    finally:
        e.stop()


def test_shutdown_answers_queued_requests():
    e = Engine().start()
    try:
        s = e.connect()
        hello(s, e.token)
        # six 4 MP requests: the first is still running at the shutdown, whatever the machine's speed
        for rid in range(6):
            s.sendall(image_frame(e.token, rid, gray_photo(2000, 2000), options={"render": 8}))
        time.sleep(0.2)
        stopper = e.connect()
        hello(stopper, e.token)
        stopper.sendall(frame({"type": "shutdown", "id": 1, "token": e.token}))
        bye, _ = read_reply(stopper)
        assert bye["type"] == "bye"
        codes = []
        while True:
            r = read_until(s, None, timeout=60)
            if r is None:
                break
            codes.append(r[0].get("code", r[0]["type"]))
        assert "shutting_down" in codes and len(codes) == 6, codes
        assert e.proc.wait(30) == 0
    finally:
        e.stop()
