"""The window's page and API over HTTP on 127.0.0.1 (engine/pageserver.py).

Every request, the page's own files included, names the key as its first path segment
(http://127.0.0.1:PORT/KEY/...), so the page's relative links carry it and nothing answers
without it. The API is JSON except the preview, which is raw RGB bytes (no PNG round trip in
the edit loop) and the photo, a PNG the page shows under the colors.
"""

import json
import os

from .. import TinctError
from ..pageserver import PageHandler, PageServer
from .points import check_points
from .session import EngineDown, Superseded, decode_image

PAGE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "page")
MAX_REFERENCE = 64 << 20


class UiServer(PageServer):
    def __init__(self, session, port=0):
        self.session = session
        self.on_done = None   # called after Apply or Cancel (GIMP's Interactive…): the window closes
        PageServer.__init__(self, _Handler, port, page_dir=PAGE_DIR)

    def done(self):
        if self.on_done is not None:
            self.on_done()

    @property
    def url(self):
        return "http://127.0.0.1:%d/%s/" % (self.port, self.key)


class _Handler(PageHandler):
    server_version = "tinct-ui"

    def _route(self):
        """The path after the key, or None once a refusal was sent."""
        if not self.host_ok():
            self.send_json(403, {"error": "wrong host"})
            return None
        parts = self.path.split("?", 1)[0].split("/", 2)
        if len(parts) < 3 or not self.server_ref.key_ok(parts[1]):
            self.send_json(403, {"error": "wrong or missing token: open the address tinct ui printed"})
            return None
        return parts[2]

    def do_GET(self):
        route = self._route()
        if route is None:
            return
        session = self.server_ref.session
        if route == "api/state":
            return self.send_json(200, dict(session.state(), engine=session.watch.state))
        if route == "api/health":
            return self.send_json(200, session.watch.state)
        if route == "api/photo":
            return self.send(200, session.display_png(), "image/png")
        if route.startswith("api/"):
            return self.send_json(404, {"error": "no such call"})
        self.send_static(route)

    def do_POST(self):
        route = self._route()
        if route is None:
            return
        try:
            if route == "api/reference":
                rgb = decode_image(self.read_body(MAX_REFERENCE), "the reference")
                return self.send_json(200, {"reference": self.server_ref.session.add_reference(rgb)})
            call = getattr(self, "_api_" + route[4:], None) if route.startswith("api/") else None
            if call is None:
                return self.send_json(404, {"error": "no such call"})
            call(self.read_json())
        except Superseded:
            self.send_json(409, {"error": "superseded by a newer edit"})
        except EngineDown as exc:
            self.send_json(503, {"error": str(exc), "engine": "down"})
        except (TinctError, ValueError, KeyError, TypeError) as exc:
            self.send_json(400, {"error": "bad request: %s" % exc})

    def _points(self, body):
        s = self.server_ref.session
        return check_points(body.get("points", []), s.width, s.height)

    def _api_preview(self, body):
        s = self.server_ref.session
        rgb = s.preview(self._points(body), _saturation(body), body.get("reference", 0),
                        int(body.get("generation", 0)))
        self.send(200, rgb.tobytes(), "application/octet-stream",
                  [("X-Generation", str(int(body.get("generation", 0)))),
                   ("X-Preview-Ms", "%.0f" % (1000 * s.last_preview_s))])

    def _api_suggest(self, body):
        s = self.server_ref.session
        colors = s.suggest(self._points(body), body.get("reference", 0), int(body["x"]), int(body["y"]),
                           int(body.get("count", 8)))
        self.send_json(200, {"colors": colors})

    def _api_save(self, body):
        saved = self.server_ref.session.save(self._points(body), _saturation(body), body.get("reference", 0))
        self.send_json(200, saved)

    def _api_apply(self, body):
        self.send_json(200, self.server_ref.session.apply(self._points(body), _saturation(body)))
        self.server_ref.done()

    def _api_cancel(self, body):
        self.send_json(200, {"cancelled": True})
        self.server_ref.done()


def _saturation(body):
    value = float(body.get("saturation", 1.0))
    if not 0.0 <= value <= 4.0:
        raise ValueError("saturation must be from 0 to 4, got %s" % value)
    return value
