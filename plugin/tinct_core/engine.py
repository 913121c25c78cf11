# -*- coding: utf-8 -*-
"""The bridge between a Colorize plan and the engine client (client.py).

Turns a job.Plan into the client's colorize() call and the reply into an RGB
Pixels rendering in the image's precision. Stdlib only, Python 2.7 and 3.
"""

from __future__ import absolute_import, division

from .errors import TinctCancelled, TinctUserError
from .pixels import Pixels


def _image(pix, x=None, y=None, opacity=None):
    d = {"data": pix.data, "width": pix.width, "height": pix.height,
         "channels": pix.channels, "dtype": pix.dtype}
    if x is not None:
        d["x"] = x
        d["y"] = y
    if opacity is not None:
        d["opacity"] = opacity
    return d


def _get(obj, name, default=None):
    if isinstance(obj, dict):
        return obj.get(name, default)
    return getattr(obj, name, default)


def build_request(plan, settings):
    """The client's colorize() keyword arguments for this plan."""
    hints = [_image(p, dx, dy, op) for (p, dx, dy, op) in plan.hints]
    # only the RGB rendering comes back (no ab planes): the result layer is RGB in LCh Color mode
    options = {"size": settings.size, "device": settings.device, "instances": settings.instances,
               "render": plan.bits, "ab": "none", "method": "net"}
    damage = None
    if plan.damage is not None:
        p, dx, dy = plan.damage
        damage = _image(p, dx, dy)
    return dict(photo=_image(plan.photo_pixels), hints=hints,
                reference=_image(plan.reference) if plan.reference is not None else None,
                damage=damage,
                instances=[_image(m) for m in plan.instances] or None,
                options=options)


def result_rgb(result, plan):
    """The RGB rendering in the reply as Pixels (the photo's size, plan.bits)."""
    rgb = _get(result, "rgb")
    if rgb is None:
        raise TinctUserError("The engine's reply has no RGB rendering; update the engine.")
    data = _get(rgb, "data", rgb)
    width = _get(rgb, "width", plan.photo.width)
    height = _get(rgb, "height", plan.photo.height)
    dtype = _get(rgb, "dtype", "uint8" if plan.bits == 8 else "uint16")
    bits = 16 if "16" in str(dtype) else 8
    return Pixels(bytes(data), width, height, 3, bits)


NOT_CHANGED = " The image was not changed."


def _user_error(exc):
    """A client exception as one plain message for the user."""
    text = str(exc).strip()
    if not text:
        text = "the engine failed (%s)." % type(exc).__name__
    if "Tinct" not in text:
        text = "Tinct: " + text
    if not text.endswith((".", "!", "?")):
        text += "."
    return TinctUserError(text + NOT_CHANGED)


def _is_cancel(exc):
    return "Cancel" in type(exc).__name__ or getattr(exc, "code", None) == "cancelled"


class EngineBridge(object):
    """Runs a plan through the engine client. `client` defaults to client.EngineClient(), which finds
    the engine through engine.json (TINCT_ENGINE_CONFIG and friends override it) and starts it when
    none answers."""

    def __init__(self, client=None):
        self._client = client
        self._hello = None

    @property
    def client(self):
        if self._client is None:
            try:
                from .client import EngineClient
            except ImportError:
                raise TinctUserError("Tinct's engine client is missing from the plug-in folder; reinstall Tinct."
                                     + NOT_CHANGED)
            self._client = EngineClient()
        return self._client

    def hello(self):
        """The engine's greeting (starting the engine when none runs); TinctUserError when unreachable."""
        if self._hello is None:
            try:
                self._hello = self.client.hello() or {}
            except TinctUserError:
                raise
            except Exception as exc:
                raise _user_error(exc)
        return self._hello

    def max_pixels(self):
        """The largest photo the engine takes (asks the engine, starting it when needed)."""
        limit = _get(self.hello(), "max_pixels") or _get(self._client, "max_pixels", None)
        try:
            return int(limit) if limit else None
        except (TypeError, ValueError):
            return None

    def device(self):
        """'cpu' / 'cuda' as a running engine reports it, or None when none runs (never starts one:
        the dialog must open at once)."""
        try:
            client = self.client
            if hasattr(client, "autostart"):
                from .client import EngineClient
                client = EngineClient(config=getattr(client, "_config", None), autostart=False,
                                      reply_timeout=3.0)
            return _get(client.hello(), "device")
        except Exception:
            return None

    def _request(self, call, cancel):
        """call(client), the request itself; a cancel comes back as TinctCancelled, any other failure
        as one plain TinctUserError."""
        try:
            return call(self.client)
        except TinctUserError:
            raise
        except Exception as exc:
            if (cancel is not None and cancel()) or _is_cancel(exc):
                raise TinctCancelled()
            raise _user_error(exc)

    def detect_damage(self, photo, threshold=None, progress=None, cancel=None):
        """The engine's damage mask of photo (Pixels): (bytes, one per pixel, 255 = damaged; info)."""
        result = self._request(lambda client: client.detect_damage(_image(photo), threshold=threshold,
                                                                   progress=progress, cancel=cancel), cancel)
        mask = _get(result, "mask")
        if mask is None:
            raise TinctUserError("The engine's reply has no damage mask; update the engine." + NOT_CHANGED)
        return bytes(_get(mask, "data", mask)), _get(result, "info", {}) or {}

    def colorize(self, plan, settings, progress=None, cancel=None):
        kwargs = build_request(plan, settings)
        result = self._request(lambda client: client.colorize(progress=progress, cancel=cancel, **kwargs), cancel)
        info = _get(result, "info", {}) or {}
        return result_rgb(result, plan), info
