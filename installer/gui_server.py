"""The installer page over HTTP on 127.0.0.1, for a web browser where pywebview is missing
(and for the headless-Chromium tests).

Only this machine can connect, and only a page that knows the random key in its address
may call the API: another local user or a web page elsewhere cannot make it install
anything. Requests whose Host is not 127.0.0.1/localhost are refused (DNS rebinding).
"""

import json
import mimetypes
import os
import secrets
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

GUI_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "gui")
API_METHODS = ("state", "start", "poll")
MAX_BODY = 1 << 20


class GuiServer(object):
    def __init__(self, api, port=0):
        self.api = api
        self.key = secrets.token_urlsafe(24)
        handler = type("Handler", (_Handler,), {"server_ref": self})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self._thread = None

    @property
    def url(self):
        return "http://127.0.0.1:%d/?key=%s" % (self.port, self.key)

    def start(self):
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def serve_forever(self):
        self.httpd.serve_forever()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


class _Handler(BaseHTTPRequestHandler):
    server_ref = None
    server_version = "tinct-install"

    def log_message(self, fmt, *args):  # keep the terminal for the installer's own messages
        pass

    def _host_ok(self):
        host = (self.headers.get("Host") or "").rsplit(":", 1)[0]
        return host in ("127.0.0.1", "localhost")

    def _send(self, code, body, ctype="application/json; charset=utf-8"):
        data = body if isinstance(body, bytes) else body.encode("utf-8")
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if not self._host_ok():
            return self._send(403, '{"error": "wrong host"}')
        name = self.path.split("?", 1)[0].lstrip("/") or "index.html"
        path = os.path.join(GUI_DIR, name)
        if "/" in name or "\\" in name or name.startswith(".") or not os.path.isfile(path):
            return self._send(404, '{"error": "not found"}')
        with open(path, "rb") as fh:
            data = fh.read()
        ctype = mimetypes.guess_type(name)[0] or "application/octet-stream"
        if ctype.startswith("text/") or ctype.endswith("javascript"):
            ctype += "; charset=utf-8"
        self._send(200, data, ctype)

    def do_POST(self):
        server = self.server_ref
        if not self._host_ok():
            return self._send(403, '{"error": "wrong host"}')
        if not secrets.compare_digest(self.headers.get("X-Tinct-Key", ""), server.key):
            return self._send(403, '{"error": "wrong or missing key"}')
        method = self.path.split("?", 1)[0].rsplit("/", 1)[-1]
        if not self.path.startswith("/api/") or method not in API_METHODS:
            return self._send(404, '{"error": "no such method"}')
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            return self._send(413, '{"error": "request too large"}')
        try:
            body = json.loads(self.rfile.read(length).decode("utf-8") or "{}")
            args = body.get("args", [])
            if not isinstance(args, list):
                raise ValueError("args must be a list")
        except ValueError as exc:
            return self._send(400, json.dumps({"error": "bad request: %s" % exc}))
        try:
            result = getattr(server.api, method)(*args)
        except TypeError as exc:
            return self._send(400, json.dumps({"error": "bad arguments: %s" % exc}))
        self._send(200, json.dumps(result))
