"""Helpers for the engine-server tests (no tests here): a real `python -m engine serve` in
private temp folders, raw frames for speaking the protocol by hand, and the plug-in's client.

Every engine gets its own XDG_RUNTIME_DIR / XDG_CONFIG_HOME, so a test never touches
the user's own engine, and every blocking call has a timeout.
"""

import contextlib
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

from tests.helpers import ROOT

PLUGIN = os.path.join(ROOT, "plugin")
if PLUGIN not in sys.path:
    sys.path.insert(0, PLUGIN)

OVERRIDES = ("TINCT_SOCKET", "TINCT_PORT", "TINCT_TOKEN_FILE", "TINCT_ENGINE_CONFIG", "XDG_RUNTIME_DIR",
             "XDG_CONFIG_HOME", "TINCT_DEBUG")
START_TIMEOUT = 60


class Engine:
    """A private engine home (folders, engine.json); start() runs a real engine in it."""

    def __init__(self, config=None):
        self.home = tempfile.mkdtemp(prefix="tt-", dir="/tmp")  # short: Unix socket paths are limited
        self.run_dir = os.path.join(self.home, "run")
        self.cfg_dir = os.path.join(self.home, "cfg")
        os.makedirs(self.run_dir, mode=0o700)
        os.makedirs(os.path.join(self.cfg_dir, "tinct"))
        self.config_path = os.path.join(self.cfg_dir, "tinct", "engine.json")
        cfg = {"command": [sys.executable, "-m", "engine", "serve"]}
        cfg.update(config or {})
        with open(self.config_path, "w") as fh:
            json.dump(cfg, fh)
        self.env = {k: v for k, v in os.environ.items() if k not in OVERRIDES}
        self.env.update(XDG_RUNTIME_DIR=self.run_dir, XDG_CONFIG_HOME=self.cfg_dir,
                        TINCT_ENGINE_CONFIG=self.config_path, PYTHONPATH=ROOT)
        self.proc = None
        self.ready = None

    socket_path = property(lambda self: os.path.join(self.run_dir, "tinct", "engine.sock"))
    token_file = property(lambda self: os.path.join(self.cfg_dir, "tinct", "token"))
    log_path = property(lambda self: os.path.join(self.run_dir, "tinct", "engine.log"))

    @property
    def token(self):
        with open(self.token_file) as fh:
            return fh.read().strip()

    def start(self, *args):
        """Start `python -m engine serve ARGS` and wait for its readiness line."""
        self.proc = subprocess.Popen([sys.executable, "-m", "engine", "serve"] + list(args), cwd=ROOT, env=self.env,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = read_line(self.proc.stdout, START_TIMEOUT)
        if not line.startswith("tinct engine ready"):
            self.proc.kill()
            raise AssertionError("engine did not start: %r %s" % (line, self.proc.stderr.read()[-2000:]))
        self.ready = line
        threading.Thread(target=self.proc.stderr.read, daemon=True).start()  # never let its log pipe fill
        return self

    def pid_from_lock(self):
        with open(os.path.join(self.run_dir, "tinct", "engine.lock")) as fh:
            text = fh.read()
        return json.loads(text)["pid"] if text else None

    @contextlib.contextmanager
    def environ(self):
        """os.environ pointing at this engine, for in-process clients."""
        saved = dict(os.environ)
        try:
            for k in OVERRIDES:
                os.environ.pop(k, None)
            os.environ.update(XDG_RUNTIME_DIR=self.run_dir, XDG_CONFIG_HOME=self.cfg_dir,
                              TINCT_ENGINE_CONFIG=self.config_path)
            yield
        finally:
            os.environ.clear()
            os.environ.update(saved)

    def client(self, **kwargs):
        from tinct_core import client, config

        with self.environ():
            cfg = config.load()
        kwargs.setdefault("timeout", 60)
        kwargs.setdefault("start_timeout", START_TIMEOUT)
        return client.EngineClient(config=cfg, **kwargs)

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(10)
        s.connect(self.socket_path)
        return s

    def stop(self):
        """Stop the engine this helper or an autostarting client began (by pid), remove the folders."""
        pids = set()
        if self.proc is not None and self.proc.poll() is None:
            pids.add(self.proc.pid)
        try:
            pid = self.pid_from_lock()
            if pid:
                pids.add(pid)
        except (OSError, ValueError):
            pass
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, 15)
        deadline = time.time() + 15
        for pid in pids:
            while time.time() < deadline and alive(pid):
                time.sleep(0.05)
            if alive(pid):
                with contextlib.suppress(OSError):
                    os.kill(pid, 9)
        if self.proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(5)
        shutil.rmtree(self.home, ignore_errors=True)


def alive(pid):
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)   # reap it if it is our child
        if waited == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open("/proc/%d/stat" % pid) as fh:
            return fh.read().split(") ")[-1][:1] != "Z"
    except OSError:
        return True


def read_line(stream, timeout):
    box = []
    t = threading.Thread(target=lambda: box.append(stream.readline()), daemon=True)
    t.start()
    t.join(timeout)
    return box[0].strip() if box else ""


# ---- raw frames ----

def frame(header, payload=b"", magic=b"TNCT", payload_len=None, header_bytes=None):
    raw = header_bytes if header_bytes is not None else json.dumps(header).encode("utf-8")
    n = len(payload) if payload_len is None else payload_len
    return struct.pack(">4sIQ", magic, len(raw), n) + raw + payload


def image_frame(token, rid, photo, hints=(), options=None, reference=None, damage=None, instances=(), extra=None):
    """A colorize frame; hints, damage and instances are (array, fields) pairs (fields: x, y, opacity)."""
    import numpy as np

    buffers, payload = [], []

    def add(arr, fields=None):
        arr = np.ascontiguousarray(arr)
        buffers.append({"dtype": arr.dtype.name, "shape": list(arr.shape)})
        payload.append(arr.tobytes())
        return dict(fields or {}, buffer=len(buffers) - 1)

    header = {"type": "colorize", "id": rid, "token": token, "photo": add(photo),
              "hints": [add(a, f) for a, f in hints],
              "options": options if options is not None else {"render": 8}}
    if reference is not None:
        header["reference"] = add(reference)
    if damage is not None:
        header["damage"] = add(*damage)
    if instances:
        header["instances"] = [add(a, f) for a, f in instances]
    header.update(extra or {})
    header["buffers"] = buffers
    return frame(header, b"".join(payload))


def read_reply(sock, timeout=30):
    """(header, [numpy arrays]) of the next frame, or None at EOF."""
    from engine.server.framing import Limits, read_frame

    sock.settimeout(timeout)

    class Stream:
        def readinto(self, view):
            try:
                return sock.recv_into(view)
            except ConnectionResetError:
                return 0

    f = read_frame(Stream(), Limits(max_frame=1 << 34))
    return None if f is None else (f.header, f.buffers)


def read_until(sock, rid, timeout=60):
    """Skip progress frames; the first other reply for `rid` (or with no id)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        r = read_reply(sock, max(0.1, deadline - time.time()))
        if r is None:
            return None
        if r[0].get("type") != "progress":
            return r
    raise AssertionError("no reply within %s s" % timeout)


def hello(sock, token, rid=0):
    sock.sendall(frame({"type": "hello", "id": rid, "token": token, "protocol": 1}))
    reply = read_reply(sock)
    assert reply is not None and reply[0]["type"] == "hello", reply
    return reply[0]


def closed_by_peer(sock, timeout=10):
    """True when the engine closed the connection (EOF or reset) within `timeout`."""
    sock.settimeout(timeout)
    try:
        while True:
            data = sock.recv(1 << 16)
            if not data:
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False


def gray_photo(h, w, seed=0):
    """A smooth gray test photo with some structure (not noise, so colors are stable)."""
    import numpy as np

    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    rng = np.random.default_rng(seed)
    a, b = rng.uniform(0.02, 0.1, 2)
    img = 128 + 60 * np.sin(x * a) * np.cos(y * b) + 40 * (x / max(w, 1) - 0.5)
    return np.clip(img, 0, 255).astype(np.uint8)
