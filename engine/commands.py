"""`tinct colorize` and `tinct batch`: the headless product."""

import argparse
import os
import sys
import warnings

from . import TinctError
from .imageio import load_image

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp", ".gif")


def add_common(p):
    p.add_argument("--reference", metavar="REF",
                   help="a color photo whose palette Tinct should borrow (same scene or character "
                        "-> same colors across images)")
    p.add_argument("--size", type=int, default=256, metavar="N",
                   help="working resolution: the network sees the photo with its short side at N pixels "
                        "(rounded to a multiple of 8; default 256). Colors are carried back to full "
                        "resolution along the photo's edges, so larger N mostly helps small details")
    p.add_argument("--method", choices=("net", "levin"), default="net",
                   help="net: the neural network (default); levin: Levin et al. 2004 propagation of your "
                        "hints, needs no model but needs hints")
    p.add_argument("--model", metavar="ONNX", help="use another ONNX model instead of the shipped one")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="where the network runs (default: the GPU when onnxruntime-gpu finds one)")
    p.add_argument("--bits", type=int, choices=(8, 16),
                   help="bits per channel of the output PNG (default: 16 for 16-bit input, else 8)")
    p.add_argument("--instances", nargs="+", metavar="auto|none|MASK.png",
                   help="instance-aware colorization: auto (the default when the instance-aware model is "
                        "installed) finds people and objects and colorizes each on its own too; none uses "
                        "the whole-photo network alone; or give mask images the photo's size (white or "
                        "opaque = the object), one per object, e.g. saved GIMP selections")
    p.add_argument("--fused-model", metavar="ONNX", help="use another instance-aware (fused) ONNX model")
    p.add_argument("--restore-model", metavar="ONNX", help="use another damage-restoration ONNX model")


def register(sub):
    p = sub.add_parser(
        "colorize", help="colorize one photo",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Colorize one black-and-white (or faded) photo and write a color PNG the same size.",
        epilog="""examples:
  tinct colorize photo.jpg                      -> photo_color.png
  tinct colorize photo.jpg -o out.png --size 384
  tinct colorize photo.jpg --hints dots.png     follow painted color dots
  tinct colorize photo.jpg --damage marks.png   fill scratches and tears first
  tinct colorize photo.jpg --damage auto        find them (tinct detect-damage), then fill them

hints: a PNG the size of the photo, transparent everywhere except where you paint.
Each painted pixel says "this spot has this color"; a single pixel is enough.
damage: a PNG the size of the photo; paint over scratches, dust, tears and folds
(on transparency, or white on black). Those pixels are filled from their
surroundings by a partial-convolution network before colorizing; no other pixel
of the photo changes.
""")
    p.add_argument("input", help="the photo (PNG, JPEG, TIFF, ...; gray or color; 8 or 16 bits)")
    p.add_argument("-o", "--output", help="where to write the PNG (default: <name>_color.png beside the input)")
    p.add_argument("--hints", metavar="HINTS.png", help="RGBA hint image the size of the photo")
    p.add_argument("--damage", metavar="MASK.png|auto", help="auto: find the damage with the detector; or a "
                                                             "damage mask the size of the photo: painted pixels are "
                                                        "restored before colorizing")
    p.add_argument("--engine", action="store_true",
                   help="send the work to the running engine (`tinct serve`), starting it if needed")
    add_common(p)
    p.set_defaults(func=run_colorize)

    b = sub.add_parser(
        "batch", help="colorize every photo in a folder",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Colorize every image in INPUT_DIR into OUTPUT_DIR/<name>.png, loading the model once.",
        epilog="""A file with the same name (any extension) in --hints-dir is used as that photo's hints,
and one in --damage-dir as its damage mask.
If some files fail, the others are still written, the failures are listed at the end and the
exit status is 2.""")
    b.add_argument("input_dir")
    b.add_argument("output_dir")
    b.add_argument("--hints-dir", metavar="DIR", help="folder of hint images matched by file name")
    b.add_argument("--damage-dir", metavar="DIR|auto", help="folder of damage masks matched by file name, or auto: "
                                                            "find each photo's damage with the detector")
    add_common(b)
    from .batch_ray import add_ray_options

    add_ray_options(b)
    b.set_defaults(func=run_batch)


def default_output(path):
    stem, _ = os.path.splitext(path)
    return stem + "_color.png"


def load_reference(path):
    return None if not path else load_image(path, "reference image")


def load_hints(hints_path, photo, photo_path):
    """The RGBA hint image for `photo`, checked against it; one-line errors name both files."""
    hints = load_image(hints_path, "hint image")
    if hints.ndim != 3 or hints.shape[2] != 4:
        raise TinctError("%s: hint image needs transparency (RGBA); paint dots on a transparent layer"
                         % hints_path)
    if hints.shape[:2] != photo.shape[:2]:
        raise TinctError("%s: hint image is %dx%d but the photo %s is %dx%d" % (
            hints_path, hints.shape[1], hints.shape[0], photo_path, photo.shape[1], photo.shape[0]))
    if hints.dtype != photo.dtype and hints.dtype.itemsize != 1:
        hints = (hints >> 8).astype("uint8")
    return hints


AUTO = "auto"  # --damage / --damage-dir: the detector finds the damage (engine/detect_damage.py)


def make_detector(args):
    from .detect_damage import Detector

    return Detector(device=args.device)


def load_damage(damage_path, photo, photo_path):
    """The damage mask for `photo` as bool (H, W), checked against it."""
    from .restore import damage_from_image

    damage = damage_from_image(load_image(damage_path, "damage mask"), damage_path)
    if damage.shape != photo.shape[:2]:
        raise TinctError("%s: damage mask is %dx%d but the photo %s is %dx%d" % (
            damage_path, damage.shape[1], damage.shape[0], photo_path, photo.shape[1], photo.shape[0]))
    return damage


def colorize_file(colorizer, in_path, out_path, hints_path=None, reference=None, args=None, progress=None,
                  damage_path=None, restorer=None, detector=None):
    """Colorize one file, restoring its damage mask first when given (damage_path AUTO: the mask
    `detector` finds); raises TinctError naming the file on bad input. Nothing is written on failure."""
    photo = load_image(in_path, "image")
    hints = load_hints(hints_path, photo, in_path) if hints_path else None
    damage = load_damage(damage_path, photo, in_path) if damage_path and damage_path != AUTO else None
    restored = 0
    try:
        if damage_path == AUTO:
            from .restore import split_progress

            found, progress = split_progress(progress, 0.1)
            damage = detector.detect(photo, progress=found)
        if damage is not None:
            from .restore import split_progress

            first, progress = split_progress(progress)
            photo, restored = restorer.restore(photo, damage, progress=first)
        result = colorizer.colorize(photo, hints=hints, reference=reference, size=args.size,
                                    method=args.method, progress=progress, instances=instances_arg(args))
    except TinctError as exc:
        raise TinctError("%s: %s" % (in_path, exc))
    if damage_path:
        result.info["restored_pixels"] = restored
    result.save_png(out_path, bits=args.bits)
    return result


def load_masks(paths):
    """Instance mask files -> boolean masks (inside = at least half white, or half opaque)."""
    masks = []
    for path in paths:
        m = load_image(path, "instance mask")
        if m.ndim == 3:
            m = m[..., 3] if m.shape[2] == 4 else m[..., :3].max(-1)
        masks.append(m >= (32768 if m.dtype.itemsize == 2 else 128))
    return masks


def parse_instances(values):
    """--instances: None, "auto", "none" or a list of mask files, checked before any photo is read."""
    if not values:
        return None
    if len(values) == 1 and values[0] in ("auto", "none"):
        return values[0]
    if any(v in ("auto", "none") for v in values):
        raise TinctError("--instances takes auto, none, or mask files, not a mix")
    return load_masks(values)


def instances_arg(args):
    return getattr(args, "instances_value", None)


def summarize_instances(info):
    """One phrase for the CLI line: which network colorized the photo, with how many objects."""
    inst = info.get("instances")
    if not inst or inst["mode"] == "none":
        return ""
    if inst["model"] == "fused":
        return ", %d instance%s" % (inst["used"], "" if inst["used"] == 1 else "s")
    return ", no instances"


def make_colorizer(args):
    from .pipeline import Colorizer

    args.instances_value = parse_instances(getattr(args, "instances", None))
    return Colorizer(model_path=args.model, device=args.device, fused_model_path=getattr(args, "fused_model", None))


def make_restorer(args):
    from .restore import Restorer

    return Restorer(getattr(args, "restore_model", None), device=args.device)


def run_colorize(args):
    out = args.output or default_output(args.input)
    if args.engine:
        from .server.commands import colorize_via_engine

        if args.model or getattr(args, "fused_model", None):
            raise TinctError("--model cannot be combined with --engine: the engine serves the model it was "
                             "started with (tinct serve --model ...)")
        return colorize_via_engine(args.input, out, args.hints, args.reference, args.size, progress=True,
                                   method=args.method, device=args.device, bits=args.bits,
                                   instances=getattr(args, "instances", None), damage_path=args.damage)
    reference = load_reference(args.reference)
    colorizer = make_colorizer(args)
    from tqdm import tqdm

    with tqdm(total=100, desc=os.path.basename(args.input), unit="%", leave=False,
              disable=not sys.stderr.isatty()) as bar:
        def progress(fraction, message):
            bar.set_postfix_str(message)
            bar.n = int(fraction * 100)
            bar.refresh()

        with warnings.catch_warnings():  # instance messages are printed below, once
            warnings.simplefilter("ignore", UserWarning)
            result = colorize_file(colorizer, args.input, out, args.hints, reference, args, progress,
                                   damage_path=args.damage, restorer=make_restorer(args) if args.damage else None,
                                   detector=make_detector(args) if args.damage == AUTO else None)
    print("%s -> %s (%dx%d, %s on %s%s)" % (args.input, out, result.width, result.height,
                                            result.info["method"], result.info["device"],
                                            summarize_instances(result.info)))
    if args.damage:
        print("  %d damaged pixels restored" % result.info["restored_pixels"])
    for message in result.info.get("instances", {}).get("messages", []):
        print("  " + message)
    return 0


def find_by_stem(folder, stem):
    """The image in `folder` named like a photo (any extension): its hints or its damage mask."""
    if not folder:
        return None
    for name in sorted(os.listdir(folder)):
        s, ext = os.path.splitext(name)
        if s == stem and ext.lower() in IMAGE_EXTS:
            return os.path.join(folder, name)
    return None


def run_batch(args):
    if getattr(args, "ray", None) is not None:
        from .batch_ray import run_batch_ray

        return run_batch_ray(args)
    if getattr(args, "ray_actors", None):
        raise TinctError("--ray-actors needs --ray")
    if not os.path.isdir(args.input_dir):
        raise TinctError("%s: not a folder" % args.input_dir)
    if args.hints_dir and not os.path.isdir(args.hints_dir):
        raise TinctError("%s: hints folder not found" % args.hints_dir)
    if args.damage_dir and args.damage_dir != AUTO and not os.path.isdir(args.damage_dir):
        raise TinctError("%s: damage folder not found" % args.damage_dir)
    files = sorted(f for f in os.listdir(args.input_dir)
                   if os.path.isfile(os.path.join(args.input_dir, f)) and not f.startswith("."))
    if not files:
        raise TinctError("%s: no files to colorize" % args.input_dir)
    os.makedirs(args.output_dir, exist_ok=True)
    reference = load_reference(args.reference)
    colorizer = make_colorizer(args)
    if args.method == "net":
        colorizer.runtime  # load the model once, up front, so a broken model fails before any photo
        colorizer.fused  # the same for the instance-aware model, when there is one
    restorer = make_restorer(args) if args.damage_dir else None
    if restorer:
        restorer.runtime
    detector = make_detector(args) if args.damage_dir == AUTO else None
    if detector:
        detector.runtime
    from tqdm import tqdm

    failures = []
    done = 0
    with_instances = 0
    for name in tqdm(files, desc="colorizing", unit="photo"):
        stem = os.path.splitext(name)[0]
        try:
            result = colorize_file(colorizer, os.path.join(args.input_dir, name),
                                   os.path.join(args.output_dir, stem + ".png"),
                                   find_by_stem(args.hints_dir, stem), reference, args,
                                   damage_path=AUTO if detector else find_by_stem(args.damage_dir, stem),
                                   restorer=restorer, detector=detector)
            done += 1
            with_instances += result.info.get("instances", {}).get("model") == "fused"
        except TinctError as exc:
            failures.append(str(exc))
    print("%d of %d photos colorized into %s" % (done, len(files), args.output_dir))
    if colorizer.fused_model_path and instances_arg(args) != "none" and args.method == "net":
        print("%d of them with instances (objects colorized on their own too), %d by the whole-photo network "
              "alone" % (with_instances, done - with_instances))
    if failures:
        print("%d failed:" % len(failures), file=sys.stderr)
        for f in failures:
            print("  " + f, file=sys.stderr)
        return 2
    return 0
