"""A held-out part of the corpus, scored during training (`tinct train --holdout N`).

Why: every fine-tune of the shipped network lost automatic PSNR on photos it had not seen
while its training loss kept falling (engine/weights/MODEL_CARD.md). On 1558 photos the
useful number of steps has to be found, not guessed: a run keeps N photos out of training,
scores them with `tinct eval`'s own protocol and pipeline every few hundred steps, and keeps
the best weights so far in OUT/best.pt (exportable, and a `--init` for other runs).

The split depends on the file names only (a hash), not on --seed or the folder's order, so
every run on the same corpus holds out the same photos.
"""

import os
import zlib

import numpy as np
import torch

BEST = "best.pt"
HOLDOUT_HINTS = (0, 10)  # automatic, and the hint count


def split_paths(paths, holdout):
    """(training paths, held-out paths): the `holdout` photos whose names hash lowest are held out."""
    if holdout <= 0:
        return list(paths), []
    if holdout >= len(paths):
        raise ValueError("--holdout %d leaves no photo to train on (%d photos)" % (holdout, len(paths)))
    ranked = sorted(paths, key=lambda p: (zlib.crc32(os.path.basename(p).encode()), os.path.basename(p)))
    held = set(ranked[:holdout])
    return [p for p in paths if p not in held], [p for p in paths if p in held]


class TorchRuntime:
    """A training network behind ModelRuntime's interface, so the held-out score runs the
    product's own pipeline (working grid, hint encoding and propagation, guided upsampling)."""

    wants_hint_prop = True

    def __init__(self, model, device):
        self.model, self.device = model, str(device)
        self._torch_device = device

    def run(self, l, hint_ab, hint_mask, global_hints, hint_prop=None):
        dev = self._torch_device
        t = lambda a: None if a is None else torch.from_numpy(np.ascontiguousarray(a, np.float32)).to(dev)  # noqa: E731
        with torch.no_grad():
            ab, dist = self.model(t(l), t(hint_ab), t(hint_mask), t(global_hints), t(hint_prop))
        return ab.cpu().numpy(), dist.cpu().numpy()


def heldout_scores(model, device, paths, hint_counts=HOLDOUT_HINTS):
    """Mean PSNR (dB) of the held-out photos by number of hints, as `tinct eval` measures it.
    The model is put in eval mode for the scoring and back in training mode after."""
    from ..evaluate import run_eval
    from ..pipeline import Colorizer

    colorizer = Colorizer(runtime=TorchRuntime(model, device))
    was_training = model.training
    model.eval()
    try:
        results = run_eval(paths, hint_counts=hint_counts, methods=("tinct",), colorizer=colorizer, progress=False)
    finally:
        model.train(was_training)
    return {n: results["methods"]["tinct"][n] for n in hint_counts}


def selection_score(scores):
    """The one number that picks the best weights: the mean over the hint counts scored."""
    return float(np.mean(list(scores.values())))


def save_best(path, weights, step, scores):
    """Write the best weights so far (the weights.pt format, so `tinct export` and `--init` take it)."""
    from .loop import save_atomic

    save_atomic(dict(weights, heldout={str(n): v for n, v in scores.items()}, best_step=step), path)
