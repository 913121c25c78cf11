"""Runs colorize requests one at a time, in fair order, on the loaded Colorizer.

The model is loaded once at start; one inference thread keeps memory bounded
(one full-size result at a time) and leaves no contention between requests.
Progress goes to each request's own connection through its outbox, so a client
that stops reading never blocks this thread.
"""

import inspect
import sys
import threading
import time
import traceback

import numpy as np

from .. import TinctError
from ..color import lab_to_srgb_int
from ..hints import compose_hint_layers
from ..restore import split_progress
from .protocol import place_mask
from .scheduler import FairQueue

PIPELINE_SHARE = 0.85   # progress fraction for Colorizer.colorize; the rest is rendering the outputs
HEARTBEAT_S = 2.0
IDLE_TRIM_S = 5.0       # idle this long after work: give freed memory back (not between requests of a burst)


class Cancelled(Exception):
    pass


class Job:
    """One queued or running colorize request."""

    def __init__(self, conn, request):
        self.conn = conn
        self.request = request
        self.id = request.id
        self.cancel = threading.Event()
        self.cancel_reason = ("cancelled", "cancelled")
        self.enqueued = time.time()
        self.fraction = 0.0
        self.message = "Queued"

    def check(self):
        if self.cancel.is_set() or self.conn.is_closed():
            raise Cancelled()

    def report(self, fraction, message):
        self.check()
        self.fraction, self.message = float(fraction), str(message)
        self.conn.send_progress(self.id, self.fraction, self.message)


class Worker:
    def __init__(self, colorizer, make_colorizer, log=None, restorer=None):
        self.default = colorizer
        self.restorer = restorer  # engine.restore.Restorer, or None when no restoration model is installed
        self.make_colorizer = make_colorizer
        self.colorizers = {}
        self.queue = FairQueue()
        self.current = None
        self.served = 0
        self.failed = 0
        self.log = log or (lambda text: None)
        self._stop = threading.Event()
        self._worked = False
        self._last_done = 0.0
        self._threads = [threading.Thread(target=self._run, name="tinct-worker", daemon=True),
                         threading.Thread(target=self._heartbeat, name="tinct-heartbeat", daemon=True)]

    def start(self):
        for t in self._threads:
            t.start()

    def features(self):
        params = inspect.signature(self.default.colorize).parameters
        from ..detect_damage import Detector

        return {"damage": self.restorer is not None, "instances": "instances" in params,
                "detect_damage": Detector().installed}

    def submit(self, job):
        ahead = len(self.queue.order()) + (1 if self.current is not None else 0)
        self.queue.put(job.conn, job)
        job.conn.send_progress(job.id, 0.0, _waiting(ahead))

    def cancel(self, job, code="cancelled", message="cancelled"):
        """Cancel a queued or running job; a queued one is answered at once."""
        job.cancel_reason = (code, message)
        job.cancel.set()
        if self.queue.remove(job.conn, lambda j: j is job):
            self._finish(job, error=(code, message))

    def drop_connection(self, conn):
        """The client went away: forget its queued jobs, stop its running one."""
        for job in self.queue.remove(conn):
            job.cancel.set()
            conn.job_done(job.id)
        current = self.current
        if current is not None and current.conn is conn:
            current.cancel.set()

    def stop(self, message):
        self._stop.set()
        for job in self.queue.close():
            self._finish(job, error=("shutting_down", message))
        current = self.current
        if current is not None:
            current.cancel_reason = ("shutting_down", message)
            current.cancel.set()
        self._threads[0].join(timeout=30)

    def colorizer_for(self, device):
        if device == "auto" or device == self.default.device:
            return self.default
        if device not in self.colorizers:
            c = self.make_colorizer(device)
            c.runtime  # load now: a missing CUDA provider is an error for this request only
            self.colorizers[device] = c
        return self.colorizers[device]

    def _run(self):
        while not self._stop.is_set():
            job = self.queue.get(timeout=0.5)
            if job is None:
                continue
            self.current = job
            try:
                self._process(job)
            finally:
                self.current = None
                self._worked = True
                self._last_done = time.time()

    def _heartbeat(self):
        """Tell waiting and working clients the engine is alive (their read timeouts rely on it);
        once idle after work, hand freed memory back to the system."""
        while not self._stop.wait(HEARTBEAT_S):
            current = self.current
            if current is not None and not current.cancel.is_set():
                current.conn.send_progress(current.id, current.fraction, current.message)
            queued = self.queue.order()
            for ahead, job in enumerate(queued, 1 if current is not None else 0):
                job.conn.send_progress(job.id, 0.0, _waiting(ahead))
            if self._worked and current is None and not queued and time.time() - self._last_done > IDLE_TRIM_S:
                self._worked = False
                release_free_memory()

    def _process(self, job):
        t0 = time.time()
        try:
            job.check()
            run = {"suggest": self._suggest, "detect_damage": self._detect_damage}.get(job.request.kind,
                                                                                       self._colorize)
            header, arrays = run(job, t0)
        except Cancelled:
            self._finish(job, error=job.cancel_reason)
        except TinctError as exc:
            self.failed += 1
            self._finish(job, error=("engine", str(exc)))
        except MemoryError:
            self.failed += 1
            self._finish(job, error=("out_of_memory", "the engine ran out of memory; use a smaller photo or "
                                     "close other programs"))
        except Exception as exc:  # never let one request kill the engine
            self.failed += 1
            traceback.print_exc(file=sys.stderr)
            self._finish(job, error=("internal", "internal error in the engine: %s: %s" % (type(exc).__name__, exc)))
        else:
            self.served += 1
            self.log("request %s: %dx%d in %.2f s" % (job.id, job.request.width, job.request.height, time.time() - t0))
            self._finish(job, result=(header, arrays))

    def _finish(self, job, result=None, error=None):
        job.request = None  # free the photo as soon as possible
        if error is not None:
            job.conn.send_error(job.id, error[0], error[1], fatal=False)
        else:
            job.conn.send(*result)
        job.conn.job_done(job.id)

    def _colorize(self, job, t0):
        req = job.request
        opts = req.options
        H, W = req.height, req.width
        colorizer = self.colorizer_for(opts["device"])
        params = inspect.signature(colorizer.colorize).parameters
        extra, ignored = {}, list(req.notes)
        photo, restored = req.photo, None

        def pipeline_progress(fraction, message):
            job.report(PIPELINE_SHARE * fraction, message)

        if req.damage is not None:
            if self.restorer is not None:
                restore_progress, pipeline_progress = split_progress(pipeline_progress)
                damage = place_mask(req.damage[0], req.damage[1], req.damage[2], H, W)
                photo, restored = self.restorer.restore(photo, damage, progress=restore_progress)
            else:
                ignored.append("damage mask: this engine has no restoration model installed")
        if req.instances:
            if "instances" in params:
                extra["instances"] = [place_mask(m, x, y, H, W) for m, x, y in req.instances]
            else:
                ignored.append("%d instance mask%s: this engine's model is not instance-aware yet"
                               % (len(req.instances), "" if len(req.instances) == 1 else "s"))
        elif opts["instances"] in ("auto", "none") and "instances" in params:
            extra["instances"] = opts["instances"]
        hints = compose_hint_layers(req.hints, H, W) if req.hints else None
        t1 = time.time()
        result = colorizer.colorize(photo, hints=hints, reference=req.reference, size=opts["size"],
                                    method=opts["method"], progress=pipeline_progress, **extra)
        t2 = time.time()
        arrays = build_outputs(result, opts["render"], opts["ab"], job)
        info = dict(result.info)
        info.update({"queue_s": round(t0 - job.enqueued, 4), "compose_s": round(t1 - t0, 4),
                     "colorize_s": round(t2 - t1, 4), "render_s": round(time.time() - t2, 4)})
        if ignored:
            info["ignored"] = ignored
        if restored is not None:
            info["restored_pixels"] = restored  # the rendering's lightness is restored there
        header = {"type": "result", "id": job.id, "width": W, "height": H, "info": info}
        names = []
        if opts["ab"]:
            names.append("ab")
        if opts["render"]:
            names.append("rgb")
        for i, name in enumerate(names):
            header[name] = {"buffer": i}
        return header, arrays


    def _suggest(self, job, t0):
        """The distribution head's likeliest colors at one pixel (engine/suggest.py); no pixels go back."""
        from ..suggest import suggest_colors

        req = job.request
        hints = compose_hint_layers(req.hints, req.height, req.width) if req.hints else None
        job.report(0.1, "Suggesting colors")
        colors = suggest_colors(self.colorizer_for(req.options["device"]), req.photo, req.at[0], req.at[1], hints,
                                req.reference, req.options["size"], req.count)
        info = {"queue_s": round(t0 - job.enqueued, 4), "suggest_s": round(time.time() - t0, 4)}
        if req.notes:
            info["ignored"] = list(req.notes)
        return {"type": "suggestions", "id": job.id, "colors": colors, "info": info}, []


    def _detect_damage(self, job, t0):
        """The damage detector's mask of the photo (engine/detect_damage.py): uint8, 255 = damaged."""
        from ..detect_damage import Detector, mask_image

        req = job.request
        device = req.options["device"]
        detectors = self.__dict__.setdefault("detectors", {})
        if device not in detectors:
            detectors[device] = Detector(device=device)
        damage = detectors[device].detect(req.photo, req.threshold, progress=job.report)
        info = {"queue_s": round(t0 - job.enqueued, 4), "detect_s": round(time.time() - t0, 4),
                "damaged_pixels": int(damage.sum())}
        return ({"type": "damage", "id": job.id, "width": req.width, "height": req.height,
                 "mask": {"buffer": 0}, "info": info}, [mask_image(damage)])


def build_outputs(result, render_bits, ab_dtype, job=None):
    """[ab (H, W, 2) float16|32]? + [rgb (H, W, 3) uint8|16]? in one pass over the result's strips."""
    H, W = result.height, result.width
    ab = np.empty((H, W, 2), ab_dtype) if ab_dtype else None
    rgb = np.empty((H, W, 3), np.uint8 if render_bits == 8 else np.uint16) if render_bits else None
    for y0, l, ab_strip in result.strips():
        y1 = y0 + len(l)
        if ab is not None:
            ab[y0:y1] = ab_strip
        if rgb is not None:
            rgb[y0:y1] = lab_to_srgb_int(l, ab_strip, render_bits)
        if job is not None:
            job.report(PIPELINE_SHARE + (1 - PIPELINE_SHARE) * y1 / float(H), "Rendering")
    return [a for a in (ab, rgb) if a is not None]


def release_free_memory():
    """Return freed heap memory to the OS (glibc keeps big freed blocks), so an idle engine stays small."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _waiting(ahead):
    if ahead <= 0:
        return "Starting"
    return "Waiting for %d request%s ahead" % (ahead, "" if ahead == 1 else "s")
