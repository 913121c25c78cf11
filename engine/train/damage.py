"""Training the damage detector (engine/models/damage_unet.py) on ../shared/corpus, and its
ONNX export: `tinct train-damage`, `tinct export-damage`.

Samples: a random scaled, cropped, flipped corpus photo's L, made an old damaged print by
`engine.damage_synth.DamageSynth` (scene lines that are not damage, ageing, damage, scan);
the target is the synthesizer's truth mask, its unsure pixels (changed too faintly to tell)
left out. Loss: binary cross-entropy plus soft Dice over the batch; Dice keeps the rare
damaged pixels (a few % of a crop) from being drowned by the intact ones, which is what the
F1 target measures.

Resumes from OUT/checkpoint.pt like the other networks' training.
"""

import argparse
import json
import os

import numpy as np

from .. import TinctError

DEFAULT_CORPUS = os.path.join("..", "shared", "corpus")
WIDTHS = (24, 48, 64, 96)  # the shipped detector's channels per level (460 k parameters)


class DamageBatchMaker:
    """Random crops of the corpus photos' L, made old and damaged, with their truth masks."""

    def __init__(self, ls, crop=128, seed=0, pristine=0.0, clipped=0.0):
        from ..damage_synth import DamageSynth

        self.ls = ls
        self.crop = crop
        self.pristine, self.clipped = pristine, clipped
        self.rng = np.random.default_rng(seed)
        self.synth = DamageSynth(self.rng)

    def sample(self):
        from .data import random_crop

        gray = self.ls[int(self.rng.integers(len(self.ls)))]
        l = random_crop(self.rng, gray, self.crop, min_scale=0.0).astype(np.float32) / 2.55
        if self.clipped and self.rng.random() < self.clipped:  # (no draw at 0: older runs resume the same)
            l = self.synth.clip_exposure(l)
        return self.synth.sample(l, unsure=True, aged=self.rng.random() >= self.pristine)

    def batch(self, n):
        ls, masks, unsure = zip(*(self.sample() for _ in range(n)))
        return {"l": np.stack(ls)[:, None].astype(np.float32), "mask": np.stack(masks)[:, None].astype(np.float32),
                "weight": 1.0 - np.stack(unsure)[:, None].astype(np.float32)}


def load_corpus_l(folder, limit=None, progress=True):
    """The corpus photos' lightness as uint8 (L * 2.55): a third of the memory of RGB."""
    from PIL import Image

    from ..color import rgb_to_lab
    from .data import corpus_paths

    paths = corpus_paths(folder, limit)
    if progress:
        from tqdm import tqdm

        paths = tqdm(paths, desc="loading corpus", unit="photo")
    out = []
    for p in paths:
        with Image.open(p) as im:
            l = rgb_to_lab(np.asarray(im.convert("RGB")))[..., 0]
        out.append(np.clip(np.round(l * 2.55), 0, 255).astype(np.uint8))
    return out


def damage_loss(model, batch, _bins=None):
    import torch
    from torch.nn import functional as F

    logits = model(batch["l"])
    target, weight = batch["mask"], batch["weight"]  # weight 0: an unsure pixel, in no term
    bce = (F.binary_cross_entropy_with_logits(logits, target, reduction="none") * weight).sum() / weight.sum()
    p = torch.sigmoid(logits) * weight
    dice = 1 - (2 * (p * target).sum() + 1) / (p.sum() + target.sum() + 1)
    with torch.no_grad():
        hit = (p > 0.5).float()
        tp, fp, fn = (hit * target).sum(), (hit * (1 - target)).sum(), ((1 - hit) * target).sum()
        f1 = (2 * tp / (2 * tp + fp + fn).clamp(min=1)).item()
    return bce + dice, {"bce": bce.item(), "dice": dice.item(), "f1": f1}


def load_damage_model(path):
    import torch

    from ..models.damage_unet import DamageUNet

    state = torch.load(path, map_location="cpu", weights_only=False)
    if state.get("task") != "damage":
        raise ValueError("%s is not a damage-detector checkpoint" % path)
    model = DamageUNet(**state["config"])
    model.load_state_dict(state["model"])
    return model.eval(), state


def train_damage(corpus, out_dir, steps=15000, batch_size=16, crop=128, lr=2e-3, widths=WIDTHS, seed=0,
                 limit=None, checkpoint_every=100, threads=1, log=print, progress=True, pristine=0.1, clipped=0.0):
    """Train (or resume) the damage detector; returns the checkpoint path. pristine: the share of
    samples left sharp and unaged (clean modern photos are where false alarms come from); clipped:
    the share whose exposure is clipped flat first (a blown sky or white shirt is not a tear)."""
    import torch

    from ..models.damage_unet import DamageUNet
    from .loop import CHECKPOINT, pick_device, train_steps

    if threads:
        torch.set_num_threads(threads)
    multiple = 2 ** len(widths)
    if crop % multiple:
        raise ValueError("--crop must be a multiple of %d for this network" % multiple)
    os.makedirs(out_dir, exist_ok=True)
    device = pick_device()
    torch.manual_seed(seed)
    ckpt_path = os.path.join(out_dir, CHECKPOINT)
    state = torch.load(ckpt_path, map_location="cpu", weights_only=False) if os.path.exists(ckpt_path) else None
    if state is not None and state.get("task") != "damage":
        raise ValueError("%s holds another network's training; use a new --out" % ckpt_path)
    config = state["config"] if state else {"widths": list(widths)}
    model = DamageUNet(**config)
    if state:
        model.load_state_dict(state["model"])
    model.to(device).train()
    maker = DamageBatchMaker(load_corpus_l(corpus, limit, progress), crop=crop, seed=seed,
                             pristine=pristine, clipped=clipped)
    return train_steps("damage", model, model.parameters(), maker, damage_loss, out_dir, steps, batch_size, lr,
                       {"config": config, "task": "damage"}, state, log, progress, checkpoint_every, device,
                       betas=(0.9, 0.999))


def export_damage(ckpt_path, out_path, opset=17, threshold=None):
    """Checkpoint -> ONNX (input l, output damage probability), sides dynamic (multiples of size_multiple).
    threshold: the flagging threshold stamped into the model (the detector's default), e.g. one chosen
    on corpus photos with `tinct eval-damage --sweep`."""
    import warnings

    import torch

    from .. import __version__
    from .export import write_metadata

    model, state = load_damage_model(ckpt_path)

    class Probability(torch.nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, l):
            return torch.sigmoid(self.net(l))

    m = model.size_multiple
    axes = {name: {0: "batch", 2: "height", 3: "width"} for name in ("l", "damage")}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Probability(model).eval(), torch.rand(1, 1, 2 * m, 3 * m) * 100, out_path,
                          input_names=["l"], output_names=["damage"], dynamic_axes=axes, opset_version=opset,
                          dynamo=False, do_constant_folding=True)
    write_metadata(out_path, {"tinct_version": __version__, "task": "damage", "config": json.dumps(state["config"]),
                              "train_step": str(state["step"]), "size_multiple": str(m),
                              **({"threshold": str(threshold)} if threshold is not None else {})})
    return out_path


def register(sub):
    t = sub.add_parser(
        "train-damage", help="train the damage detector (resumable)",
        formatter_class=argparse.RawDescriptionHelpFormatter, description=__doc__,
        epilog="""The shipped detector came from (engine/weights/MODEL_CARD_DAMAGE.md; 82 + 27 min on 2 cores):
  tinct train-damage --out runs/damage --steps 15000 --threads 2 --widths 24,48,64,96 --pristine 0.1
  tinct train-damage --out runs/damage --steps 18000 --lr 1.25e-3 --crop 256 --batch-size 4 \\
      --pristine 0.25 --clipped 0.5          # the same run carried on: larger crops, clipped skies
  tinct export-damage runs/damage/checkpoint.pt -o engine/weights/tinct-damage.onnx --threshold 0.5
Its checkpoint is tools/checkpoints/tinct-damage.pt: copy it to RUN/checkpoint.pt to carry on.
Measure it with `tinct eval-damage ../shared/val`.""")
    t.add_argument("--corpus", default=DEFAULT_CORPUS, help="folder of training photos (default %(default)s)")
    t.add_argument("--out", default=os.path.join("runs", "damage"), help="run folder for checkpoint and log")
    t.add_argument("--steps", type=int, default=15000, help="total steps to reach (default %(default)s)")
    t.add_argument("--batch-size", type=int, default=16)
    t.add_argument("--crop", type=int, default=128, help="training crop side in pixels (multiple of 16)")
    t.add_argument("--lr", type=float, default=2e-3, help="peak learning rate, cosine decay to 10%% (default %(default)s)")
    t.add_argument("--widths", help="channels per level, e.g. 16,32,48,64 (default: the shipped detector's, %s)"
                   % ",".join(str(w) for w in WIDTHS))
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--limit", type=int, help="use only the first N photos (for quick checks)")
    t.add_argument("--threads", type=int, default=1, help="CPU threads for torch (default %(default)s)")
    t.add_argument("--checkpoint-every", type=int, default=100)
    t.add_argument("--pristine", type=float, default=0.1,
                   help="share of samples left sharp and unaged, so fine clean detail is not read as damage "
                        "(default %(default)s)")
    t.add_argument("--clipped", type=float, default=0.0,
                   help="share of samples whose highlights or shadows are first clipped flat, so a blown sky "
                        "or a white shirt at the border is not read as torn-off paper (default %(default)s)")
    t.set_defaults(func=run_train)

    e = sub.add_parser("export-damage", help="export a damage-detector checkpoint to ONNX")
    e.add_argument("checkpoint", help="a checkpoint.pt written by `tinct train-damage`")
    e.add_argument("-o", "--output", default=os.path.join("engine", "weights", "tinct-damage.onnx"))
    e.add_argument("--threshold", type=float, help="the model's default flagging threshold (default 0.5)")
    e.set_defaults(func=run_export)


def run_train(args):
    try:
        widths = tuple(int(w) for w in args.widths.split(",")) if args.widths else WIDTHS
    except ValueError:
        raise TinctError("--widths takes channel counts separated by commas, e.g. 16,32,48,64")
    if not os.path.isdir(args.corpus):
        raise TinctError("%s: training folder not found" % args.corpus)
    for name in ("pristine", "clipped"):
        if not 0 <= getattr(args, name) <= 1:
            raise TinctError("--%s is a share between 0 and 1" % name)
    try:
        path = train_damage(args.corpus, args.out, args.steps, args.batch_size, args.crop, args.lr, widths, args.seed,
                            args.limit, args.checkpoint_every, args.threads, pristine=args.pristine,
                            clipped=args.clipped)
    except ValueError as exc:
        raise TinctError(str(exc))
    print("checkpoint: %s" % path)
    return 0


def run_export(args):
    if not os.path.exists(args.checkpoint):
        raise TinctError("%s: checkpoint not found" % args.checkpoint)
    if args.threshold is not None and not 0 < args.threshold < 1:
        raise TinctError("--threshold must be between 0 and 1")
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    try:
        export_damage(args.checkpoint, args.output, threshold=args.threshold)
    except ValueError as exc:
        raise TinctError(str(exc))
    print("wrote %s" % args.output)
    return 0
