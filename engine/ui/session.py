"""One photo being edited in the window, and the running engine that does the work.

The window's loop is an edit, then a new preview. So that the loop stays fast, the photo is
brought to the working grid once, here: every preview sends the engine that small photo plus
one hint image of points, and the engine's per-photo caches (encoder features, the Levin
factorization) see the same photo each time. Full resolution is computed only on Save.

Edits that come faster than the engine answers are coalesced: each preview carries a
generation number, and one that is no longer the newest when its turn comes is dropped
(Superseded) instead of queueing behind the others.

A watcher checks the engine twice a second; when it has gone it says so (the page shows it)
and starts a new one; the points live in the page and are sent again once it is back.
"""

import io
import os
import threading
import time

import numpy as np

from .. import TinctError
from ..color import l_to_gray, lab_to_srgb_int
from ..pipeline import photo_l_rows, reduce_l, working_size
from .points import hint_image

REFERENCE_SIDE = 256      # a reference only steers the palette (a 64-px histogram): keep it small
DISPLAY_SIDE = 4096       # the photo the page shows under the colors, at most this long side
WATCH_S = 0.5


class Superseded(Exception):
    """A newer edit arrived while this preview waited; its answer would be stale."""


class EngineDown(Exception):
    """The engine is not there (right now); the watcher is bringing it back."""


def reduce_rgb(rgb, side):
    """An RGB(A)/gray image shrunk (area average) so its long side is at most `side`, as uint8 RGB."""
    from PIL import Image

    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8:
        rgb = (rgb >> 8).astype(np.uint8) if rgb.dtype == np.uint16 else (np.clip(rgb, 0, 1) * 255).astype(np.uint8)
    if rgb.ndim == 2:
        rgb = np.repeat(rgb[..., None], 3, axis=2)
    im = Image.fromarray(np.ascontiguousarray(rgb[..., :3]))
    scale = side / float(max(im.size))
    if scale < 1:
        im = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))), Image.BOX)
    return np.asarray(im)


def decode_image(data, what):
    """Image file bytes -> uint8 RGB array; TinctError naming `what` when they are not an image."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as im:
            im.draft("RGB", (2 * REFERENCE_SIDE, 2 * REFERENCE_SIDE))
            return reduce_rgb(np.asarray(im.convert("RGB")), REFERENCE_SIDE)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise TinctError("%s is not an image this program can read (%s)" % (what, exc))


class EngineWatch:
    """Whether the engine answers; when it does not, says so and starts a new one."""

    def __init__(self, new_client):
        self.new_client = new_client
        self.outages = 0   # how often it went away: a page that polled past a quick restart still learns of it
        self.state = {"ok": False, "message": "Starting the engine…", "pid": None, "device": None, "outages": 0}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tinct-ui-watch", daemon=True)

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()

    def _run(self):
        client_mod, _ = self.new_client(False)
        errors = (client_mod.EngineError,)
        while not self._stop.is_set():
            try:
                st = self.new_client(False)[1].status()
                self._up(st)
            except errors:
                was_ok = self.state["ok"]
                self.outages += was_ok
                self.state = dict(self.state, ok=False, outages=self.outages, message=(
                    "The engine stopped; starting it again… (your points are kept)" if was_ok
                    else "Starting the engine…"))
                try:
                    self._up(self.new_client(True)[1].hello())
                except errors as exc2:
                    self.state = dict(self.state, message="The engine does not start: %s Retrying…" % exc2)
                    self._stop.wait(2.0)
            self._stop.wait(WATCH_S)

    def _up(self, reply):
        self.state = {"ok": True, "message": "", "pid": reply.get("pid"), "device": reply.get("device"),
                      "outages": self.outages}


class EditSession:
    """The photo, its working-grid copy, the reference, and the engine calls the page makes."""

    def __init__(self, photo, photo_path, out_path, hints_path, points=(), reference=None, size=256,
                 new_client=None, apply_to=None):
        self.photo = photo
        self.apply_to = apply_to   # a caller's file (GIMP's Interactive…): Apply writes the points there
        self.photo_path, self.out_path, self.hints_path = photo_path, out_path, hints_path
        self.height, self.width = photo.shape[:2]
        self.size = size
        self.preview_h, self.preview_w = working_size(self.height, self.width, size)
        self.preview_l = reduce_l(photo, self.preview_h, self.preview_w)
        # As gray values the engine turns back into this very L: its grid is this photo, unresized.
        self.preview_photo = l_to_gray(self.preview_l).astype(np.float32)
        self.points = list(points)
        # References by number, so that undo in the page can go back to an earlier one (0: none).
        self.references = {0: None}
        self.initial_reference = self.add_reference(reference) if reference is not None else 0
        self.new_client = new_client
        self.client_mod = new_client(False)[0]
        self.watch = EngineWatch(new_client)
        self._render_lock = threading.Lock()
        self._wanted_lock = threading.Lock()
        self._wanted = -1
        self.last_preview_s = None

    # ---- what the page shows ----

    def state(self):
        return {"width": self.width, "height": self.height, "preview_width": self.preview_w,
                "preview_height": self.preview_h, "name": os.path.basename(self.photo_path),
                "points": [{"x": x, "y": y, "rgb": list(rgb)} for x, y, rgb in self.points],
                "reference": self.initial_reference, "out_path": self.out_path,
                "hints_path": self.hints_path, "apply": bool(self.apply_to)}

    def display_png(self):
        """The photo as the page shows it under the colors: 8-bit, long side at most DISPLAY_SIDE."""
        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(reduce_rgb(self.photo, DISPLAY_SIDE)).save(buf, "PNG", compress_level=1)
        return buf.getvalue()

    # ---- engine calls ----

    def _call(self, fn):
        """Run fn(client); an engine that is not there becomes EngineDown, its refusals TinctError."""
        client = self.new_client(False)[1]
        try:
            return fn(client)
        except (self.client_mod.EngineUnavailable, self.client_mod.EngineConnectionLost) as exc:
            raise EngineDown(str(exc))
        except self.client_mod.EngineError as exc:
            raise TinctError(str(exc))

    def _preview_hints(self, points):
        if not points:
            return []
        return [hint_image(points, self.preview_w, self.preview_h,
                           self.preview_w / float(self.width), self.preview_h / float(self.height))]

    def _reference(self, number):
        if number not in self.references:
            raise ValueError("no reference number %r in this window" % (number,))
        return self.references[number]

    def add_reference(self, rgb):
        """Keep a (shrunk) reference and return its number."""
        number = max(self.references) + 1
        self.references[number] = reduce_rgb(rgb, REFERENCE_SIDE)
        return number

    def preview(self, points, saturation, reference, generation):
        """uint8 RGB (preview_h, preview_w, 3) of the photo with these points; Superseded when stale."""
        with self._wanted_lock:
            self._wanted = max(self._wanted, generation)
        with self._render_lock:
            if generation < self._wanted:
                raise Superseded()
            t0 = time.time()
            result = self._call(lambda c: c.colorize(
                photo=self.preview_photo, hints=self._preview_hints(points), reference=self._reference(reference),
                options={"size": self.size, "ab": "float16"}))
            self.points = list(points)
        ab = np.frombuffer(result["ab"]["data"], np.float16).reshape(self.preview_h, self.preview_w, 2)
        rgb = lab_to_srgb_int(self.preview_l, ab.astype(np.float32) * float(saturation), 8)
        self.last_preview_s = time.time() - t0
        return rgb

    def suggest(self, points, reference, x, y, count=8):
        """The distribution head's likeliest colors at photo pixel (x, y), given the other points."""
        px = min(self.preview_w - 1, int(x * self.preview_w / float(self.width)))
        py = min(self.preview_h - 1, int(y * self.preview_h / float(self.height)))
        return self._call(lambda c: c.suggest(self.preview_photo, (px, py), hints=self._preview_hints(points),
                                              reference=self._reference(reference), count=count,
                                              options={"size": self.size}))

    def save(self, points, saturation, reference):
        """Full resolution through the engine: the colorized PNG and the hints PNG beside it."""
        from ..imageio import PngWriter, save_png

        bits = 16 if self.photo.dtype in (np.uint16, np.float32) else 8
        plain = abs(saturation - 1.0) < 1e-6
        options = {"size": self.size, "render": bits} if plain else {"size": self.size, "ab": "float32"}
        hints = [hint_image(points, self.width, self.height)] if points else []
        result = self._call(lambda c: c.colorize(photo=self.photo, hints=hints, reference=self._reference(reference),
                                                 options=options))
        H, W = self.height, self.width
        writer = PngWriter(self.out_path, W, H, 3, bits, level=3)
        try:
            if plain:
                rgb = np.frombuffer(result["rgb"]["data"], np.dtype(result["rgb"]["dtype"])).reshape(H, W, 3)
            ab = None if plain else np.frombuffer(result["ab"]["data"], np.float32).reshape(H, W, 2)
            for y in range(0, H, 256):
                rows = rgb[y:y + 256] if plain else lab_to_srgb_int(
                    photo_l_rows(self.photo, y, min(H, y + 256)), ab[y:y + 256] * float(saturation), bits)
                writer.write_rows(rows)
            writer.close()
        except BaseException:
            writer.abort()
            raise
        save_png(self.hints_path, hint_image(points, W, H))
        self.points = list(points)
        return {"photo": self.out_path, "hints": self.hints_path, "saturation": saturation}

    def apply(self, points, saturation):
        """Hand the points to the caller that opened the window (GIMP's Interactive…): it places them
        as its `Tinct hints` layer and colorizes with them. Written whole or not at all."""
        import json

        if not self.apply_to:
            raise TinctError("this window was not opened to apply to anything; use Save")
        tmp = self.apply_to + ".part"
        with open(tmp, "w") as fh:
            json.dump({"points": [{"x": x, "y": y, "rgb": list(rgb)} for x, y, rgb in points],
                       "saturation": saturation}, fh)
        os.replace(tmp, self.apply_to)
        self.points = list(points)
        return {"applied": len(points)}
