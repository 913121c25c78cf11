"""A page served on 127.0.0.1 to a local web browser or a pywebview window: the installer's
page (`tinct-install --gui`) and the colorization window (`tinct ui`) share it.

Only this machine can connect, and only a caller that knows the random key may use it, so
another local user or a web page elsewhere cannot drive it. Requests whose Host is not
127.0.0.1/localhost are refused (DNS rebinding). Pages are plain files from one folder of the
package: nothing is fetched from outside the machine. Stdlib only (the installer needs no numpy).
"""

import json
import mimetypes
import os
import secrets
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from . import interrupts

MAX_BODY = 1 << 20


class _Httpd(ThreadingHTTPServer):
    daemon_threads = True

    def service_actions(self):
        """Between polls (every half second) of a loop in the main thread: end on a Ctrl+C whose
        KeyboardInterrupt was lost (see engine/interrupts.py)."""
        if interrupts.seen() and threading.current_thread() is threading.main_thread():
            raise KeyboardInterrupt


def no_display_reason(env=None, platform=None):
    """Why no window can open here (None when one can)."""
    env = os.environ if env is None else env
    platform = platform or sys.platform
    if platform.startswith("win") or platform == "darwin":
        return None
    if not env.get("DISPLAY") and not env.get("WAYLAND_DISPLAY"):
        return "no display found (neither DISPLAY nor WAYLAND_DISPLAY is set)"
    return None


class PageServer(object):
    """A threading HTTP server on 127.0.0.1 with a random key; handler_class subclasses PageHandler."""

    def __init__(self, handler_class, port=0, **attributes):
        self.key = secrets.token_urlsafe(24)
        handler = type(handler_class.__name__, (handler_class,), dict(attributes, server_ref=self))
        self.httpd = _Httpd(("127.0.0.1", port), handler)
        self.port = self.httpd.server_address[1]
        self._thread = None

    def key_ok(self, sent):
        return isinstance(sent, str) and secrets.compare_digest(sent.encode("utf-8", "replace"),
                                                                self.key.encode("utf-8"))

    def start(self):
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def serve_forever(self):
        self.httpd.serve_forever()

    def stop(self):
        """Stop the thread start() began, then close the socket."""
        if self._thread is not None:
            self.httpd.shutdown()
            self._thread = None
        self.httpd.server_close()

    def serve_until_stopped(self):
        """Serve in this thread until Ctrl+C (or a shutdown from a request), then close. No
        shutdown() here: it waits for a serve loop to say it ended, and a Ctrl+C that lands before
        the loop starts would leave it waiting forever."""
        try:
            self.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            self.httpd.server_close()


class PageHandler(BaseHTTPRequestHandler):
    """Helpers for a page's requests: the Host check, replies, static files, JSON bodies."""

    server_ref = None
    page_dir = None
    server_version = "tinct"

    def log_message(self, fmt, *args):  # the terminal is for the program's own messages
        pass

    def host_ok(self):
        host = (self.headers.get("Host") or "").rsplit(":", 1)[0]
        return host in ("127.0.0.1", "localhost")

    def send(self, code, body, ctype="application/json; charset=utf-8", headers=()):
        data = body if isinstance(body, bytes) else body.encode("utf-8")
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def send_json(self, code, obj):
        self.send(code, json.dumps(obj))

    def send_static(self, name):
        """One file of page_dir by its bare name (no folders, no dot files), else 404."""
        name = name or "index.html"
        path = os.path.join(self.page_dir, name)
        if "/" in name or "\\" in name or name.startswith(".") or not os.path.isfile(path):
            return self.send_json(404, {"error": "not found"})
        with open(path, "rb") as fh:
            data = fh.read()
        ctype = mimetypes.guess_type(name)[0] or "application/octet-stream"
        if ctype.startswith("text/") or ctype.endswith("javascript"):
            ctype += "; charset=utf-8"
        self.send(200, data, ctype, [("Content-Security-Policy", "default-src 'self'; img-src 'self' blob: data:")])

    def read_body(self, limit=MAX_BODY):
        """The request's body as bytes; ValueError when it is over the limit."""
        length = int(self.headers.get("Content-Length") or 0)
        if length > limit:
            raise ValueError("request too large (%d bytes, at most %d)" % (length, limit))
        return self.rfile.read(length)

    def read_json(self, limit=MAX_BODY):
        """The request's JSON object body; ValueError when it is not one."""
        body = json.loads(self.read_body(limit).decode("utf-8") or "{}")
        if not isinstance(body, dict):
            raise ValueError("the body must be a JSON object")
        return body
