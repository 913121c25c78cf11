"""Find damage (scratches, cracks, dust, creases, tears, stains) in a photo automatically:
the U-Net of engine/models/damage_unet.py on onnxruntime, and `tinct detect-damage`.

The network sees the photo's lightness at full resolution, window by window (each with
MARGIN pixels of context that are not written), so a hairline crack stays a hairline in the
mask and memory stays flat however large the scan. The mask it writes is what `tinct
colorize --damage` and the GIMP `Tinct damage` layer read back: white where damaged.
"""

import argparse
import math
import os

import numpy as np

from . import TinctError
from .runtime import WEIGHTS_DIR
from .task_model import TaskModel, pad_to

DEFAULT_DAMAGE_MODEL = os.path.join(WEIGHTS_DIR, "tinct-damage.onnx")
WINDOW = 1024  # the most a window's side holds, margins included
MARGIN = 64  # context each side of a window's core: about the network's reach
DEFAULT_THRESHOLD = 0.5


def windows(h, w, window=WINDOW, margin=MARGIN):
    """(core, window) boxes (y0, y1, x0, x1) that cover the photo with cores of about equal size."""
    def spans(n):
        k = max(1, math.ceil((n - 2 * margin) / float(window - 2 * margin)))
        edges = np.linspace(0, n, k + 1).round().astype(int)
        return [(int(a), int(b), max(0, int(a) - margin), min(n, int(b) + margin)) for a, b in zip(edges, edges[1:])]

    for y0, y1, wy0, wy1 in spans(h):
        for x0, x1, wx0, wx1 in spans(w):
            yield (y0, y1, x0, x1), (wy0, wy1, wx0, wx1)


_GRAY8_L = []


def _gray8_l():
    """L of each 8-bit gray value (a table: scans are often 8-bit gray, and this is 20x faster)."""
    if not _GRAY8_L:
        from .color import gray_to_l

        _GRAY8_L.append(gray_to_l(np.arange(256, dtype=np.uint8)))
    return _GRAY8_L[0]


class Detector(TaskModel):
    """Loads the damage detector once; finds damage in any number of photos."""

    ENV, DEFAULT, TASK = "TINCT_DAMAGE_MODEL", DEFAULT_DAMAGE_MODEL, "damage"
    NAME, OPTION = "damage-detection model", "--damage-model"

    @property
    def threshold(self):
        return float(self.runtime.metadata.get("threshold", DEFAULT_THRESHOLD))

    def probability_l(self, l):
        """The network on one window: L (h, w) 0..100 -> damage probability (h, w)."""
        multiple = int(self.runtime.metadata.get("size_multiple", 16))
        h, w = l.shape
        lp = pad_to(l.astype(np.float32), multiple)
        return self.runtime.session.run(["damage"], {"l": lp[None, None]})[0][0, 0, :h, :w]

    def probability(self, photo, progress=None):
        """photo (gray, RGB or RGBA; any supported dtype) -> damage probability (H, W) float32.
        progress(fraction, message) is called per window."""
        from .pipeline import photo_l_rows, validate_photo

        photo = validate_photo(photo)
        H, W = photo.shape[:2]
        out = np.empty((H, W), np.float32)
        boxes = list(windows(H, W))
        band, band_rows = None, None
        for i, ((y0, y1, x0, x1), (wy0, wy1, wx0, wx1)) in enumerate(boxes):
            if band_rows != (wy0, wy1):  # windows come row band by row band: L of the band once
                band, band_rows = (_gray8_l()[photo[wy0:wy1]] if photo.dtype == np.uint8 and photo.ndim == 2
                                   else photo_l_rows(photo, wy0, wy1)), (wy0, wy1)
            p = self.probability_l(band[:, wx0:wx1])
            out[y0:y1, x0:x1] = p[y0 - wy0:y1 - wy0, x0 - wx0:x1 - wx0]
            if progress:
                progress((i + 1) / float(len(boxes)), "Detecting damage")
        return out

    def detect(self, photo, threshold=None, progress=None):
        """photo -> damage mask bool (H, W), True = damaged."""
        threshold = self.threshold if threshold is None else threshold
        if not 0.0 < threshold < 1.0:
            raise TinctError("the damage threshold must be between 0 and 1, got %g" % threshold)
        return self.probability(photo, progress) >= threshold


def mask_image(damage):
    """bool (H, W) -> 8-bit gray mask, white = damaged: what `--damage` reads back."""
    return np.where(damage, 255, 0).astype(np.uint8)


def default_output(path):
    return os.path.splitext(path)[0] + "_damage.png"


def register(sub):
    p = sub.add_parser("detect-damage", help="find scratches, cracks, dust and tears; write a damage mask",
                       formatter_class=argparse.RawDescriptionHelpFormatter, description=__doc__,
                       epilog="""examples:
  tinct detect-damage scan.jpg                  -> scan_damage.png (white = damaged)
  tinct detect-damage scan.jpg -o marks.png --threshold 0.3   flag more
  tinct colorize scan.jpg --damage marks.png    restore what it found (after touching it up)
  tinct colorize scan.jpg --damage auto         detect, restore and colorize in one go""")
    p.add_argument("input", help="the photo (PNG, JPEG, TIFF, ...; gray or color; 8 or 16 bits)")
    p.add_argument("-o", "--output", help="the mask PNG (default: <name>_damage.png beside the input)")
    p.add_argument("--threshold", type=float, metavar="T",
                   help="damage probability from which a pixel is flagged, 0..1 (default: the model's own, 0.7 "
                        "for the shipped one); lower finds more and flags more that is not damage")
    p.add_argument("--damage-model", metavar="ONNX", help="use another damage-detection ONNX model")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="where the network runs")
    p.set_defaults(func=run)


def run(args):
    import sys

    from PIL import Image
    from tqdm import tqdm

    from .imageio import load_image

    photo = load_image(args.input, "image")
    detector = Detector(args.damage_model, device=args.device)
    out = args.output or default_output(args.input)
    with tqdm(total=100, desc=os.path.basename(args.input), unit="%", leave=False,
              disable=not sys.stderr.isatty()) as bar:
        def progress(fraction, message):
            bar.n = int(fraction * 100)
            bar.refresh()

        damage = detector.detect(photo, args.threshold, progress)
    try:
        Image.fromarray(mask_image(damage)).save(out)
    except (OSError, ValueError) as exc:
        raise TinctError("%s: cannot write the mask (%s)" % (out, exc))
    print("%s -> %s (%d damaged pixels, %.2f %% of the photo)" % (args.input, out, int(damage.sum()),
                                                                   100.0 * damage.mean()))
    return 0
