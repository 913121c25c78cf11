"""`tinct train` and `tinct export` (need the `train` extra: torch)."""

import argparse
import os

from .. import TinctError

DEFAULT_CORPUS = os.path.join("..", "shared", "corpus")


def register(sub):
    t = sub.add_parser(
        "train", help="train the colorization network (resumable)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train Tinct's network on a folder of color photos. Training resumes from OUT/checkpoint.pt "
                    "when it exists, so you can stop (Ctrl-C) and carry on later with the same command.",
        epilog="""The shipped weights came from:
  tinct train --corpus ../shared/corpus --out runs/small --model small --steps 4000
  tinct export runs/small/checkpoint.pt -o engine/weights/tinct-small.onnx
Uses a CUDA GPU when torch sees one; the same command runs on CPU, only slower.""")
    t.add_argument("--corpus", default=DEFAULT_CORPUS, help="folder of color training photos (default %(default)s)")
    t.add_argument("--out", default=os.path.join("runs", "small"), help="run folder for checkpoint and log")
    t.add_argument("--model", default="small", choices=("small", "medium", "full"),
                   help="network size: small runs fast on CPU (default), full is the SIGGRAPH17 width")
    t.add_argument("--stage", default="full", choices=("full",),
                   help="training stage (the instance-aware stages come with the instance models)")
    t.add_argument("--steps", type=int, default=4000, help="total steps to reach (default %(default)s)")
    t.add_argument("--batch-size", type=int, default=16)
    t.add_argument("--crop", type=int, default=128, help="training crop side in pixels (multiple of 8)")
    t.add_argument("--lr", type=float, default=5e-4, help="peak learning rate (cosine decay to 10%%)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--limit", type=int, help="use only the first N photos (for quick checks)")
    t.add_argument("--threads", type=int, help="CPU threads for torch")
    t.add_argument("--checkpoint-every", type=int, default=100)
    t.set_defaults(func=run_train)

    e = sub.add_parser("export", help="export a training checkpoint to ONNX",
                       description="Write an ONNX model that `tinct colorize --model` and the engine can run.")
    e.add_argument("checkpoint", help="a checkpoint.pt written by `tinct train`")
    e.add_argument("-o", "--output", default=os.path.join("engine", "weights", "tinct-small.onnx"))
    e.set_defaults(func=run_export)


def _need_torch():
    try:
        import torch  # noqa: F401
    except ImportError:
        raise TinctError("training needs PyTorch: pip install 'tinct[train]'")


def run_train(args):
    _need_torch()
    if args.crop % 8:
        raise TinctError("--crop must be a multiple of 8")
    if not os.path.isdir(args.corpus):
        raise TinctError("%s: training folder not found" % args.corpus)
    from .loop import train

    path = train(args.corpus, args.out, model_name=args.model, steps=args.steps, batch_size=args.batch_size,
                 crop=args.crop, lr=args.lr, seed=args.seed, limit=args.limit,
                 checkpoint_every=args.checkpoint_every, threads=args.threads)
    print("checkpoint: %s" % path)
    return 0


def run_export(args):
    _need_torch()
    if not os.path.exists(args.checkpoint):
        raise TinctError("%s: checkpoint not found" % args.checkpoint)
    from .export import export_onnx

    out = export_onnx(args.checkpoint, args.output)
    print("wrote %s (%.1f MB)" % (out, os.path.getsize(out) / 1e6))
    return 0
