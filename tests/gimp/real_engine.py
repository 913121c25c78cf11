"""The real engine (`python -m engine serve`, issue 3) for the GIMP tests, run as the session's user.

The session's HOME, XDG_CONFIG_HOME and XDG_RUNTIME_DIR are in its work folder, which has the
same path on the host and inside the chroot (harness.GimpSession), so the engine on the host and
the plug-in's client inside GIMP find the same engine.json, Unix socket and token file by the
client's own rules (plugin/tinct_core/config.py): nothing is overridden for the test. engine.json
is the one the installer wrote (or, until the installer can target a profile, the same content
written here), and its recorded command is what the client autostarts an engine with, inside the
chroot (the repository and the host Python are mounted there at their own paths).
"""

import json
import os
import signal
import subprocess
import sys
import threading
import time

from tests.gimp import harness

sys.path.insert(0, os.path.join(harness.ROOT, "plugin"))
from tinct_core import client as tclient  # noqa: E402
from tinct_core import config as tconfig  # noqa: E402

READY = "tinct engine ready"


def engine_json(session):
    return os.path.join(session.home, ".config", "tinct", "engine.json")


def write_engine_json(session):
    """What the installer writes (installer/engine_config.config_for), for the session's user."""
    path = engine_json(session)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    data = {"python": sys.executable, "command": [sys.executable, "-m", "engine", "serve"],
            "socket": session.path("run", "tinct", "engine.sock"), "port": None, "host": "127.0.0.1",
            "token_file": os.path.join(session.home, ".config", "tinct", "token")}
    with open(path, "w") as fh:
        json.dump(data, fh, indent=2)
    return path


def _ready_line(stream, timeout):
    box = []

    def reader():
        for raw in iter(stream.readline, ""):
            if raw.startswith(READY):
                box.append(raw.strip())
                return
        box.append("")

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    t.join(timeout)
    return box[0] if box else None


class RealEngine(object):
    """The session's engine: started on the host, stopped with `shutdown`, observed with `status`."""

    def __init__(self, session):
        self.session = session
        path = engine_json(session)
        if not os.path.isfile(path):
            write_engine_json(session)
        with open(path) as fh:
            self.config_data = json.load(fh)
        self.config = tconfig.load(path=path, environ={})
        self.log = session.path("engine-host.log")
        self.proc = None
        self.ready = None

    def client(self, autostart=False):
        return tclient.EngineClient(config=self.config, autostart=autostart, timeout=60.0)

    def start(self, timeout=180):
        """Start `python -m engine serve` on the host as the session's user; returns its readiness line."""
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "engine", "serve"], cwd=harness.ROOT,
                                         env=self.session.host_env(), stdin=subprocess.DEVNULL,
                                         stdout=subprocess.PIPE, stderr=log, universal_newlines=True,
                                         start_new_session=True)
        line = _ready_line(self.proc.stdout, timeout)
        if not line:
            self.proc.kill()
            with open(self.log) as fh:
                raise RuntimeError("the engine did not get ready (%r):\n%s" % (line, fh.read()[-3000:]))
        self.ready = line
        return line

    def status(self):
        """The engine's status reply, or None when no engine answers."""
        try:
            return self.client().status()
        except tclient.EngineUnavailable:
            return None

    def running(self):
        return self.status() is not None

    def wait_working(self, timeout=60):
        """Wait until the engine is working on a request; returns its status."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            st = self.status()
            if st and st.get("running"):
                return st
            time.sleep(0.1)
        raise AssertionError("the engine never started working on a request")

    def kill(self):
        """SIGKILL the engine that answers now (wherever it was started); returns its pid."""
        st = self.status()
        if st is None:
            return None
        os.kill(st["pid"], signal.SIGKILL)
        wait_gone(st["pid"])
        return st["pid"]

    def stop(self):
        """Stop whatever engine serves this session (ours, or one the plug-in autostarted)."""
        for _ in range(3):
            st = self.status()
            if st is None:
                break
            try:
                self.client().shutdown()
            except tclient.EngineError:
                pass
            wait_gone(st["pid"])
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def wait_gone(pid, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            os.kill(pid, 0)
        except OSError:
            return True
        try:  # a zombie child of ours counts as gone
            with open("/proc/%d/stat" % pid) as fh:
                if fh.read().split(")")[-1].split()[0] == "Z":
                    return True
        except OSError:
            return True
        time.sleep(0.1)
    return False


def process_root(pid):
    """The root directory a process runs in (the chroot for an engine the plug-in started)."""
    return os.readlink("/proc/%d/root" % pid)
