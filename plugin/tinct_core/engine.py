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
    options = {"size": settings.size, "device": settings.device, "instances": settings.instances,
               "render": plan.bits, "method": "net"}
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


class EngineBridge(object):
    """Runs a plan through the engine client. `client` defaults to client.EngineClient()."""

    def __init__(self, client=None):
        self._client = client

    @property
    def client(self):
        if self._client is None:
            try:
                from .client import EngineClient
            except ImportError:
                raise TinctUserError("Tinct's engine client is missing from the plug-in folder; reinstall Tinct.")
            self._client = EngineClient()
        return self._client

    def max_pixels(self):
        return _get(self._client, "max_pixels", None) if self._client is not None else None

    def device(self):
        """'cpu' / 'cuda' as the engine reports it, or None when it does not answer."""
        try:
            hello = self.client.hello()
        except Exception:
            return None
        return _get(hello, "device")

    def colorize(self, plan, settings, progress=None, cancel=None):
        kwargs = build_request(plan, settings)
        try:
            result = self.client.colorize(progress=progress, cancel=cancel, **kwargs)
        except TinctUserError:
            raise
        except Exception as exc:
            if cancel is not None and cancel():
                raise TinctCancelled()
            name = type(exc).__name__
            if "Cancel" in name:
                raise TinctCancelled()
            raise TinctUserError("Tinct: %s" % (exc,) if str(exc) else "Tinct: the engine failed (%s)." % name)
        return result_rgb(result, plan), _get(result, "info", {}) or {}
