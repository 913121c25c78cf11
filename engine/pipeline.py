"""Photo (+ hints, reference) -> full-resolution ab.

The photo is reduced to the working grid (short side `size`, a multiple of 8) by
exact area averaging in row strips, the network (or Levin's optimization) predicts
ab there, and a guided filter fitted on that grid carries ab back to full
resolution along the photo's own edges. Full-resolution work streams in strips,
so a 100 MP photo never needs more than a few full-size planes.
"""

import time
from collections import namedtuple

import numpy as np

from . import TinctError
from .color import gray_to_l, lab_to_srgb_int, rgb_to_l
from .hints import encode_local_hints, global_hint_vector, has_hints
from .imageio import MIN_SIDE, PngWriter, check_size
from .runtime import PhotoFeatures
from .upsample import BilinearRows, area_matrix, guided_coefficients

STRIP_ROWS = 256
METHODS = ("net", "levin")


def working_size(height, width, size=256):
    """Short side -> min(size, photo's short side), both sides rounded to multiples of 8."""
    if size < MIN_SIDE:
        raise TinctError("working size %d is too small; use at least %d" % (size, MIN_SIDE))
    short = min(height, width)
    target = min(size, short)
    scale = target / float(short)

    def r8(v):
        return max(8, int(round(v * scale / 8.0)) * 8)

    return r8(height), r8(width)


def photo_l_rows(photo, y0, y1):
    """The photo's L for rows y0..y1 (gray, RGB or RGBA; any supported dtype)."""
    block = photo[y0:y1]
    if block.ndim == 2:
        return gray_to_l(block)
    return rgb_to_l(block[..., :3])


def validate_photo(photo, name="photo"):
    photo = np.asarray(photo)
    if photo.ndim == 3 and photo.shape[2] == 1:
        photo = photo[..., 0]
    if photo.ndim not in (2, 3) or (photo.ndim == 3 and photo.shape[2] not in (3, 4)):
        raise TinctError("%s must be gray (H, W) or RGB(A) (H, W, 3|4), got shape %s" % (name, photo.shape))
    if photo.dtype not in (np.uint8, np.uint16, np.float32, np.float64):
        raise TinctError("%s has unsupported pixel type %s (use 8/16-bit or float)" % (name, photo.dtype))
    if photo.dtype == np.float64:
        photo = photo.astype(np.float32)
    check_size(photo, name)
    return photo


WorkingGrid = namedtuple("WorkingGrid", "photo l hint_ab hint_mask global_hints")
WorkingGrid.__doc__ = "One request at the network's resolution: the checked photo, L, local hints (ab, mask), global hints."


def propagated_hints(grid):
    """The hints spread along the photo's edges on a prepared grid, as the network takes them."""
    from .levin import propagate_hints

    return propagate_hints(grid.l, grid.hint_ab, grid.hint_mask)


class ColorResult:
    """ab for the whole photo, computed strip by strip from the fitted guided-filter maps."""

    def __init__(self, photo, coef_a, coef_b, info):
        self.photo = photo
        self.height, self.width = photo.shape[:2]
        self.coef_a, self.coef_b = coef_a, coef_b
        self.info = info
        self._sampler = BilinearRows(coef_a.shape[0], coef_a.shape[1], self.height, self.width)
        self._ab = None

    def strips(self, rows=STRIP_ROWS):
        """Yield (y0, L (n, W), ab (n, W, 2)) for consecutive row strips."""
        for y0 in range(0, self.height, rows):
            y1 = min(self.height, y0 + rows)
            l = photo_l_rows(self.photo, y0, y1)
            a = self._sampler.rows(self.coef_a, y0, y1)
            b = self._sampler.rows(self.coef_b, y0, y1)
            yield y0, l, (a * l[..., None] + b).astype(np.float32)

    @property
    def ab(self):
        """Full-resolution ab, float32 (H, W, 2)."""
        if self._ab is None:
            out = np.empty((self.height, self.width, 2), np.float32)
            for y0, _, ab in self.strips():
                out[y0:y0 + len(ab)] = ab
            self._ab = out
        return self._ab

    @property
    def l(self):
        return photo_l_rows(self.photo, 0, self.height)

    @property
    def bits(self):
        return 16 if self.photo.dtype in (np.uint16, np.float32) else 8

    def render(self, bits=None):
        """sRGB (H, W, 3) = the photo's own L + predicted ab."""
        bits = bits or self.bits
        out = np.empty((self.height, self.width, 3), np.uint8 if bits == 8 else np.uint16)
        for y0, l, ab in self.strips():
            out[y0:y0 + len(l)] = lab_to_srgb_int(l, ab, bits)
        return out

    def save_png(self, path, bits=None, progress=None):
        """Stream the rendering to a PNG without holding a full-size copy."""
        bits = bits or self.bits
        writer = PngWriter(path, self.width, self.height, 3, bits, level=3)
        try:
            for y0, l, ab in self.strips():
                writer.write_rows(lab_to_srgb_int(l, ab, bits))
                if progress:
                    progress(min(1.0, (y0 + len(l)) / float(self.height)), "Writing")
            writer.close()
        except BaseException:
            writer.abort()
            raise


class Colorizer:
    """Loads the model once; colorizes any number of photos."""

    def __init__(self, model_path=None, device="auto", threads=None, fused_model_path=None, runtime=None):
        """runtime: an already-loaded network with ModelRuntime's interface instead of model_path
        (training scores its held-out photos through the product's pipeline with one)."""
        from .instance_aware import default_fused_path

        self.model_path = model_path
        self.device_request = device
        self.threads = threads
        self._runtime = runtime
        # the instance-aware model (full + instance networks + fusion), when installed or given
        self.fused_model_path = fused_model_path or default_fused_path(model_path)
        self._fused = None
        self._detector = None
        self._detections = PhotoFeatures()

    @property
    def runtime(self):
        if self._runtime is None:
            from .runtime import ModelRuntime

            self._runtime = ModelRuntime(self.model_path, self.device_request, self.threads)
        return self._runtime

    @property
    def device(self):
        return self.runtime.device

    @property
    def fused(self):
        """The fused ONNX model, or None when none is installed (instances then fall back to `none`)."""
        if self._fused is None and self.fused_model_path:
            from .instance_aware import FusedModel

            self._fused = FusedModel(self.fused_model_path, self.device_request, self.threads)
        return self._fused

    @property
    def detector(self):
        if self._detector is None:
            from .detect import Detector

            self._detector = Detector(device=self.device_request, threads=self.threads)
        return self._detector

    def colorize(self, photo, hints=None, reference=None, size=256, method="net", progress=None, instances=None):
        """instances: "auto" (detected objects; the default when the fused model is installed),
        "none" (the full network alone), or a list of masks, each (H, W) or (mask, offset_x, offset_y)."""
        report = progress or (lambda fraction, message: None)
        if method not in METHODS:
            raise TinctError("unknown method %r; choose one of %s" % (method, ", ".join(METHODS)))
        if method == "levin" and reference is not None:  # refused before any pixel work
            raise TinctError("the Levin method cannot use a reference image; use the network method")
        t0 = time.time()
        report(0.05, "Reading the photo")
        grid = self.prepare(photo, hints, reference, size)
        photo, l_low, hint_ab, hint_mask = grid.photo, grid.l, grid.hint_ab, grid.hint_mask
        h, w = l_low.shape
        H, W = photo.shape[:2]
        info = {"working_size": [w, h], "size": [W, H], "method": method,
                "hint_cells": int(hint_mask.sum()), "reference": reference is not None}
        report(0.2, "Colorizing")
        t1 = time.time()
        if method == "net":
            plan = self._plan_instances(instances, photo, l_low)
            info["instances"] = plan.info()
            if plan.used:
                inst = self.fused.inputs(photo, plan.boxes, hint_ab, hint_mask, h, w)
                ab_low = self.fused.run(l_low, hint_ab, hint_mask, grid.global_hints, inst, propagated_hints(grid))
                info["device"] = self.fused.device
            else:
                ab_low = self.run_network(grid)[0]
                info["device"] = self.device
        else:
            from .levin import levin_colorize

            ab_low = levin_colorize(l_low, hint_ab, hint_mask > 0)
            info["device"] = "cpu"
        info["model_s"] = round(time.time() - t1, 4)
        report(0.8, "Fitting colors to the photo's edges")
        coef_a, coef_b = guided_coefficients(l_low, ab_low)
        info["prepare_s"] = round(t1 - t0, 4)
        result = ColorResult(photo, coef_a, coef_b, info)
        report(1.0, "Done")
        return result

    def prepare(self, photo, hints=None, reference=None, size=256):
        """Check the inputs and bring them to the working grid: the network's view of one request."""
        photo = validate_photo(photo)
        H, W = photo.shape[:2]
        if hints is not None:
            hints = np.asarray(hints)
            if hints.ndim != 3 or hints.shape[2] != 4:
                raise TinctError("hint image must be RGBA, got shape %s" % (hints.shape,))
            if hints.shape[:2] != (H, W):
                raise TinctError("hint image is %dx%d but the photo is %dx%d" % (hints.shape[1], hints.shape[0], W, H))
        if reference is not None:
            reference = np.asarray(reference)
            if reference.ndim == 2:
                reference = np.repeat(reference[..., None], 3, axis=2)
            if reference.ndim != 3 or reference.shape[2] < 3:
                raise TinctError("reference must be an RGB image, got shape %s" % (reference.shape,))
            reference = reference[..., :3]
        h, w = working_size(H, W, size)
        l_low = self._reduce_l(photo, h, w)
        hint_ab, hint_mask = encode_local_hints(hints, h, w) if has_hints(hints) else (
            np.zeros((h, w, 2), np.float32), np.zeros((h, w), np.float32))
        return WorkingGrid(photo, l_low, hint_ab, hint_mask, global_hint_vector(reference))

    def run_network(self, grid):
        """The full network on a prepared grid: (ab (h, w, 2), distribution logits (313, h/4, w/4))."""
        prop = propagated_hints(grid).transpose(2, 0, 1)[None] if self.runtime.wants_hint_prop else None
        ab, dist = self.runtime.run(grid.l[None, None], grid.hint_ab.transpose(2, 0, 1)[None],
                                    grid.hint_mask[None, None], grid.global_hints[None], prop)
        return ab[0].transpose(1, 2, 0), dist[0]

    def _plan_instances(self, instances, photo, l_low):
        """Which objects get the instance network; the plan says "full" when none do, and why.
        The detector's plan for a photo is kept with its working-size L as the key (as the
        encoder's features are), so a hint edit on the same photo does not detect again."""
        from .instance_aware import InstancePlan, check_instances_arg, plan_auto, plan_masks, warn_fallback

        instances = check_instances_arg(instances)
        if instances is None:
            instances = "auto" if self.fused_model_path else "none"
        if instances == "none":
            return InstancePlan("none")
        mode = "auto" if instances == "auto" else "masks"
        fused = self.fused
        if fused is None:
            return InstancePlan(mode, messages=[warn_fallback(
                "no instance-aware model installed; the full network colorized the photo alone")])
        if mode == "auto":
            detect = lambda _: (photo.shape, plan_auto(photo, self.detector, fused.max_instances))  # noqa: E731
            shape, plan = self._detections.get(l_low, detect)
            if shape != photo.shape:  # another photo with the same working-size L
                plan = detect(None)[1]
        else:
            plan = plan_masks(instances, photo.shape[0], photo.shape[1], fused.max_instances)
        if plan.used:
            plan.model = "fused"
        return plan

    def _reduce_l(self, photo, h, w):
        return reduce_l(photo, h, w)


def reduce_l(photo, h, w):
    """The photo's L on an (h, w) grid by exact area averaging, in row strips (any photo size)."""
    H, W = photo.shape[:2]
    if (h, w) == (H, W):   # already on the grid (the interactive window's previews): averaging is the identity
        return photo_l_rows(photo, 0, H)
    mh = area_matrix(h, H)
    mw = area_matrix(w, W).T.copy()
    out = np.zeros((h, w), np.float32)
    for y0 in range(0, H, STRIP_ROWS):
        y1 = min(H, y0 + STRIP_ROWS)
        out += mh[:, y0:y1] @ (photo_l_rows(photo, y0, y1) @ mw)
    return out
