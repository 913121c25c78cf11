"""Per-pixel color suggestions (Zhang et al. 2017, "recommended colors").

Besides ab, the network predicts a distribution over the 313 quantized ab bins.
At a spot the user points at, its most likely, well-separated modes are the
colors worth offering as hints: a palette that suits that spot (a car may be red
or blue, never green-brown like the road) instead of a blind guess.
"""

import argparse

import numpy as np

from . import TinctError
from .color import lab_to_srgb_int
from .gamut import ab_bins

MIN_SEPARATION = 15.0  # ab units between two suggestions, so they differ visibly


def softmax(logits):
    e = np.exp(logits - logits.max())
    return e / e.sum()


def pick_modes(probs, bins, count, min_separation=MIN_SEPARATION):
    """Indices of the `count` most likely bins, each at least `min_separation` from those picked before."""
    picked = []
    for i in np.argsort(-probs):
        if all(np.hypot(*(bins[i] - bins[j])) >= min_separation for j in picked):
            picked.append(int(i))
            if len(picked) == count:
                break
    return picked


def suggest_colors(colorizer, photo, x, y, hints=None, reference=None, size=256, count=8):
    """The likeliest colors at pixel (x, y): [{"rgb": (r, g, b), "ab": (a, b), "probability": p}, ...]
    best first; rgb is the color at that pixel's own lightness, as it would show in the result."""
    from .pipeline import photo_l_rows

    grid = colorizer.prepare(photo, hints, reference, size)
    H, W = grid.photo.shape[:2]
    if not (0 <= x < W and 0 <= y < H):
        raise TinctError("the point (%d, %d) is outside the %dx%d photo" % (x, y, W, H))
    _, logits = colorizer.run_network(grid)
    ch, cw = logits.shape[1:]
    cy, cx = min(ch - 1, int(y * ch / H)), min(cw - 1, int(x * cw / W))
    probs = softmax(logits[:, cy, cx].astype(np.float64))
    bins = ab_bins()
    l = photo_l_rows(grid.photo, y, y + 1)[0, x]
    out = []
    for i in pick_modes(probs, bins, count):
        ab = bins[i]
        rgb = lab_to_srgb_int(np.array([[l]], np.float32), ab[None, None].astype(np.float32))[0, 0]
        out.append({"rgb": tuple(int(v) for v in rgb), "ab": (float(ab[0]), float(ab[1])),
                    "probability": float(probs[i])})
    return out


def _point(text):
    try:
        x, y = (int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError("expected X,Y in pixels, like 120,80")
    return x, y


def register(sub):
    p = sub.add_parser(
        "suggest", help="list the colors the network finds likely at one spot",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=__doc__,
        epilog="""example:
  tinct suggest photo.jpg --at 120,80            the 8 likeliest colors at x=120, y=80
  tinct suggest photo.jpg --at 120,80 --hints dots.png --count 4

Each line gives a color as #rrggbb at that pixel's lightness and how likely the
network finds it. Paint the one you want as a dot on your hint image.""")
    p.add_argument("input", help="the black-and-white photo")
    p.add_argument("--at", type=_point, required=True, metavar="X,Y", help="the pixel, counted from the top left")
    p.add_argument("--count", type=int, default=8, help="how many colors (default %(default)s)")
    p.add_argument("--hints", metavar="HINTS.png", help="hints already painted (they change the suggestions)")
    p.add_argument("--reference", metavar="REF", help="a color photo whose palette steers the suggestions")
    p.add_argument("--size", type=int, default=256, help="working resolution (default %(default)s)")
    p.add_argument("--model", metavar="ONNX", help="use another ONNX model")
    p.set_defaults(func=run)


def run(args):
    from .commands import load_hints, load_reference
    from .imageio import load_image
    from .pipeline import Colorizer

    if args.count < 1:
        raise TinctError("--count must be at least 1")
    photo = load_image(args.input, "image")
    hints = load_hints(args.hints, photo, args.input) if args.hints else None
    colors = suggest_colors(Colorizer(model_path=args.model), photo, args.at[0], args.at[1], hints,
                            load_reference(args.reference), args.size, args.count)
    print("colors at %d,%d in %s, likeliest first:" % (args.at[0], args.at[1], args.input))
    for c in colors:
        print("  #%02x%02x%02x  %5.1f%%   (a %+.0f, b %+.0f)" % (c["rgb"] + (100 * c["probability"],) + c["ab"]))
    return 0
