"""The real engine (`python3 -m engine serve --port N`, issue 3) on the host for the GIMP tests.

Used by engine_fixture.start_engine() once engine/server/ and plugin/tinct_core/client.py exist.
The plug-in in the chroot finds it through TINCT_ENGINE_CONFIG (an engine.json in the session's
work folder, which the chroot sees too) plus the TINCT_PORT / TINCT_TOKEN_FILE overrides; the
token file is written by the engine under the work folder, so both sides read the same file.

Written before the server landed: adjust the command line / readiness check to what
`tinct serve` actually does if they differ.
"""

import json
import os
import socket
import subprocess
import sys
import time

from tests.gimp import harness


def _free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class RealEngine(object):
    # Autostart from inside the chroot would have to start a host process; the server's own tests
    # cover autostart, this tier checks that a stopped engine gives a clean error.
    autostarts = False

    def __init__(self, session):
        self.session = session
        self.port = _free_port()
        xdg = session.host_path("xdg")
        os.makedirs(os.path.join(xdg, "tinct"), exist_ok=True)
        self.token_host = os.path.join(xdg, "tinct", "token")
        token_chroot = session.chroot_path("xdg", "tinct", "token")
        config = {"python": None, "command": None, "socket": None, "port": self.port, "host": "127.0.0.1",
                  "token_file": token_chroot}
        with open(session.host_path("engine.json"), "w") as fh:
            json.dump(config, fh)
        self.env = {"TINCT_ENGINE_CONFIG": session.chroot_path("engine.json"), "TINCT_PORT": str(self.port),
                    "TINCT_TOKEN_FILE": token_chroot, "XDG_CONFIG_HOME": session.chroot_path("xdg")}
        session.default_env = dict(self.env)
        host_env = dict(os.environ, XDG_CONFIG_HOME=xdg, TINCT_TOKEN_FILE=self.token_host)
        host_env["TINCT_ENGINE_CONFIG"] = session.host_path("engine.json.host")
        with open(host_env["TINCT_ENGINE_CONFIG"], "w") as fh:
            json.dump(dict(config, token_file=self.token_host), fh)
        self.proc = subprocess.Popen([sys.executable, "-m", "engine", "serve", "--port", str(self.port)],
                                     cwd=harness.ROOT, env=host_env, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, universal_newlines=True)
        deadline = time.time() + 120
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("the engine exited: %s" % self.proc.stdout.read()[-2000:])
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.2)
        else:
            self.stop()
            raise RuntimeError("the engine did not accept connections on port %d" % self.port)

    def stopped_env(self):
        env = dict(self.env)
        env["TINCT_PORT"] = str(_free_port())
        dead = self.session.host_path("engine-dead.json")
        with open(dead, "w") as fh:
            json.dump({"command": None, "socket": None, "port": int(env["TINCT_PORT"]), "host": "127.0.0.1",
                       "token_file": env["TINCT_TOKEN_FILE"]}, fh)
        env["TINCT_ENGINE_CONFIG"] = self.session.chroot_path("engine-dead.json")
        return env

    def last_options(self):
        return None

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
