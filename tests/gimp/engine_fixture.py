"""The engine the GIMP tests talk to, running on the host (the chroot shares the network).

While the real server/client (issue 3: engine/server, plugin/tinct_core/client.py) are
absent, a stand-in serves the real Colorizer over a minimal framing (standin_*.py) and its
client is installed into the chroot profile copy only. Once they land, switch start_engine
to `python3 -m engine serve --port N` with an engine.json the plug-in finds through
TINCT_ENGINE_CONFIG.
"""

import os
import shutil
import socket

from tests.gimp import harness

HERE = os.path.dirname(os.path.abspath(__file__))


def _free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class StandIn(object):
    autostarts = False

    def __init__(self, session):
        from tests.gimp.standin_engine import StandInEngine

        client = os.path.join(session.plugin_dir, "tinct_core", "client.py")
        shutil.copy2(os.path.join(HERE, "standin_client.py"), client)
        self.server = StandInEngine()
        session.default_env = {"TINCT_PORT": str(self.server.port)}

    def stopped_env(self):
        return {"TINCT_PORT": str(_free_port())}

    def stall(self, seconds):
        """Make the next requests hang for `seconds`; returns an Event set when one arrives."""
        self.server.delay = seconds
        self.server.started.clear()
        if seconds:
            self.server.release.clear()
        else:
            self.server.release.set()
        return self.server.started

    def last_options(self):
        return self.server.last_options

    def stop(self):
        self.server.close()


def start_engine(session):
    real_client = os.path.join(harness.ROOT, "plugin", "tinct_core", "client.py")
    if os.path.isfile(real_client) and os.path.isdir(os.path.join(harness.ROOT, "engine", "server")) \
            and os.path.isfile(os.path.join(HERE, "real_engine.py")) and os.environ.get("TINCT_TEST_STANDIN") != "1":
        from tests.gimp.real_engine import RealEngine  # written when issue 3 lands

        return RealEngine(session)
    return StandIn(session)
