"""The installer page over HTTP on 127.0.0.1, for a web browser where pywebview is missing
(and for the headless-Chromium tests).

The page's files are open to this machine; its API answers only a caller with the random key
in its address (header X-Tinct-Key), so another local user or a web page elsewhere cannot make
it install anything. The loopback server, Host check and replies are engine/pageserver.py's.
"""

import json
import os

from engine.pageserver import PageHandler, PageServer

GUI_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "gui")
API_METHODS = ("state", "start", "poll")


class GuiServer(PageServer):
    def __init__(self, api, port=0):
        self.api = api
        PageServer.__init__(self, _Handler, port, page_dir=GUI_DIR)

    @property
    def url(self):
        return "http://127.0.0.1:%d/?key=%s" % (self.port, self.key)


class _Handler(PageHandler):
    server_version = "tinct-install"

    def do_GET(self):
        if not self.host_ok():
            return self.send_json(403, {"error": "wrong host"})
        self.send_static(self.path.split("?", 1)[0].lstrip("/"))

    def do_POST(self):
        server = self.server_ref
        if not self.host_ok():
            return self.send_json(403, {"error": "wrong host"})
        if not server.key_ok(self.headers.get("X-Tinct-Key", "")):
            return self.send_json(403, {"error": "wrong or missing key"})
        method = self.path.split("?", 1)[0].rsplit("/", 1)[-1]
        if not self.path.startswith("/api/") or method not in API_METHODS:
            return self.send_json(404, {"error": "no such method"})
        try:
            args = self.read_json().get("args", [])
            if not isinstance(args, list):
                raise ValueError("args must be a list")
        except ValueError as exc:
            code = 413 if "too large" in str(exc) else 400
            return self.send_json(code, {"error": "bad request: %s" % exc})
        try:
            result = getattr(server.api, method)(*args)
        except TypeError as exc:
            return self.send_json(400, {"error": "bad arguments: %s" % exc})
        self.send(200, json.dumps(result))
