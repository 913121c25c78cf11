"""Training the pretrained-encoder network (`tinct train --model lite0`): the ImageNet encoder
stays frozen, its features of the corpus crops are cached once (features.py), and only the head
(engine.models.hintnet.HintHead) learns, on windows of those crops with simulated hints.

Resumable like the small network's loop: OUT/checkpoint.pt (head, optimizer, step, sampler state),
OUT/weights.pt, OUT/best.pt (best held-out score, with --holdout) and OUT/log.jsonl.
"""

import os
import time

import numpy as np
import torch
from torch.nn import functional as F

from ..gamut import ab_bins
from ..models.efficientnet import MULTIPLE, Encoder, load_pretrained
from ..models.hintnet import HeadEnsemble, HintHead, PretrainedColorNet, load_head
from .data import HintSimulator, corpus_paths, stack_samples
from .features import CorpusFeatures, build_cache
from .holdout import split_paths
from .rgb_loss import rgb_mse
from .loop import CHECKPOINT, WEIGHTS, log_interval, lr_at, optimizer_step, save_atomic, soft_targets

MODEL_NAME = "lite0"


class WindowBatches:
    """Training batches from a feature cache: a random window of a random cached crop, aligned to
    the encoder's coarsest cells, with simulated hints and their propagation."""

    def __init__(self, cache, window, seed=0):
        if window % MULTIPLE or window > cache.side:
            raise ValueError("the training window must be a multiple of %d and at most the cached side %d"
                             % (MULTIPLE, cache.side))
        self.cache, self.window = cache, window
        self.rng = np.random.default_rng(seed)
        self.hints = HintSimulator(self.rng)

    def sample(self):
        positions = (self.cache.side - self.window) // MULTIPLE + 1
        y, x = (int(v) * MULTIPLE for v in self.rng.integers(0, positions, 2))
        rgb, feats = self.cache.window(int(self.rng.integers(len(self.cache))), y, x, self.window)
        out = self.hints.sample(rgb)
        out.update(("f%d" % s, f) for s, f in zip((4, 8, 16, 32), feats))
        return out

    def batch(self, size):
        return stack_samples([self.sample() for _ in range(size)])


def head_loss(head, batch, bins, dist_weight=0.5, huber_delta=5.0, loss="huber", hint_cells_weight=20.0):
    """The head's loss on a batch (colorization_loss)."""
    ab, logits = head(batch["f4"], batch["f8"], batch["f16"], batch["f32"], batch["l"], batch["hint_ab"],
                      batch["hint_mask"], batch["global_hints"], batch["hint_prop"])
    return colorization_loss(ab, logits, batch, bins, dist_weight, huber_delta, loss, hint_cells_weight)


def colorization_loss(ab, logits, batch, bins, dist_weight=0.5, huber_delta=5.0, loss="huber",
                      hint_cells_weight=20.0):
    """The regression loss on ab at full resolution (huber: Huber on ab; rgb: squared error in
    sRGB, the PSNR's own) + cross-entropy on the 313-bin distribution (soft targets)."""
    if loss == "rgb":
        reg = rgb_mse(batch["l"], ab, batch["ab"])
    elif loss == "huber":
        reg = F.huber_loss(ab, batch["ab"], delta=huber_delta) / huber_delta
    else:
        raise ValueError("--model lite0 trains with --loss huber or rgb, not %s" % loss)
    target = soft_targets(F.avg_pool2d(batch["ab"], 4), bins)
    # cells that hold a hint count `hint_cells_weight` times: there the right answer is the user's
    # color, and `tinct suggest` must lead with it (they are about 1 % of the cells)
    weights = 1.0 + hint_cells_weight * F.max_pool2d(batch["hint_mask"], 4)[:, 0]
    ce = (-(target * F.log_softmax(logits, dim=1)).sum(1) * weights).sum() / weights.sum()
    return reg + dist_weight * ce, {loss: reg.item(), "ce": ce.item()}


DISTRIBUTION_LAYERS = ("dist_head.", "dist_hints.", "hint_trust")


def trainable_params(head, distribution_only):
    """All of the head's parameters, or only the distribution's output layers (others frozen)."""
    if not distribution_only:
        return list(head.parameters())
    chosen = []
    for name, p in head.named_parameters():
        p.requires_grad_(name.startswith(DISTRIBUTION_LAYERS))
        if p.requires_grad:
            chosen.append(p)
    return chosen


def train_pretrained(corpus, out_dir, steps=3000, batch_size=16, window=128, lr=1e-3, seed=0, limit=None,
                     checkpoint_every=100, threads=None, log=print, progress=True, holdout=0, eval_every=500,
                     feature_cache=None, crops_per_photo=4, feature_dropout=0.1, weight_decay=1e-2, init=None,
                     loss="huber", distribution_only=False):
    """Train (or resume) the head on cached encoder features; returns the last checkpoint's path.

    feature_cache: the cache folder (default OUT/features); built on first use (minutes), shared
    by runs with the same photos, holdout, crops and seed. init: a lite0 weights file whose head
    a new run starts from (fine-tuning, for example with another loss). distribution_only: train
    only the distribution's two output convolutions (the rest frozen, BatchNorm statistics too), so
    the colors stay exactly those of `init` and only `tinct suggest` changes."""
    if threads:
        torch.set_num_threads(threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(seed)
    train_paths, held_out = split_paths(corpus_paths(corpus, limit), holdout)
    encoder = Encoder(load_pretrained()).eval()
    head = HintHead(feature_dropout=feature_dropout)
    os.makedirs(out_dir, exist_ok=True)
    cache_dir = feature_cache or os.path.join(out_dir, "features")
    build_cache(train_paths, cache_dir, encoder, crops_per_photo=crops_per_photo, seed=seed, progress=progress)
    batches = WindowBatches(CorpusFeatures(cache_dir), window, seed)
    params = trainable_params(head, distribution_only)
    head.to(device).train(not distribution_only)
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    ckpt_path = os.path.join(out_dir, CHECKPOINT)
    step = 0
    if os.path.exists(ckpt_path):
        state = torch.load(ckpt_path, map_location=device, weights_only=False)
        if state.get("model_name") != MODEL_NAME or state.get("holdout", 0) != holdout:
            raise ValueError("checkpoint in %s is not a %s run with --holdout %d" % (out_dir, MODEL_NAME, holdout))
        load_head(head, state["head"])
        opt.load_state_dict(state["optimizer"])
        step = state["step"]
        batches.rng.bit_generator.state = state["rng"]
        log("resumed from step %d (%s)" % (step, ckpt_path))
    elif init:
        load_head(head, torch.load(init, map_location=device, weights_only=False)["head"])
        log("starting from the head in %s" % init)
    net = PretrainedColorNet(encoder, head).to(device).train(not distribution_only)  # held-out scoring restores it
    bins = torch.from_numpy(ab_bins()).to(device)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=steps, initial=step, desc="train %s head" % MODEL_NAME, unit="step")
    history, started = [], time.time()
    try:
        while step < steps:
            for group in opt.param_groups:
                group["lr"] = lr_at(step, steps, lr, warmup=min(100, max(1, steps // 10)))
            batch = {k: torch.from_numpy(v).to(device) for k, v in batches.batch(batch_size).items()}
            total, parts = head_loss(head, batch, bins, loss=loss)
            optimizer_step(opt, total, parts, history, bar)
            step += 1
            if step % checkpoint_every == 0 or step == steps:
                weights = {"head": head.state_dict(), "step": step, "model_name": MODEL_NAME, "holdout": holdout,
                           "distribution_only": distribution_only,
                           "feature_dropout": feature_dropout}
                save_atomic(dict(weights, optimizer=opt.state_dict(), rng=batches.rng.bit_generator.state), ckpt_path)
                save_atomic(weights, os.path.join(out_dir, WEIGHTS))
                log_interval(out_dir, step, steps, started, device, history, net, weights, held_out, eval_every, log)
                history = []
    finally:
        if bar:
            bar.close()
    return ckpt_path


def load_network(weights_paths, map_location="cpu"):
    """The whole network (pretrained encoder + trained head) from a weights/checkpoint/best file,
    or from several (a list): their heads as one HeadEnsemble. Returns (net, the first's state)."""
    paths = [weights_paths] if isinstance(weights_paths, str) else list(weights_paths)
    heads, states = [], []
    for path in paths:
        state = torch.load(path, map_location=map_location, weights_only=False)
        if state.get("model_name") != MODEL_NAME:
            raise ValueError("%s is not a %s network's weights" % (path, MODEL_NAME))
        heads.append(load_head(HintHead(), state["head"]))
        states.append(state)
    head = heads[0] if len(heads) == 1 else HeadEnsemble(heads)
    state = dict(states[0], step="+".join(str(s["step"]) for s in states))
    return PretrainedColorNet(Encoder(load_pretrained()), head).eval(), state
