"""Training the damage-restoration network (engine/models/pconv.py) on ../shared/corpus.

Samples: a random scaled, cropped, flipped corpus photo's L, and a damage mask drawn by
`engine.damage.DamageSimulator`, so the network learns the holes a restorer paints. Loss as Liu et al. 2018 without the VGG terms (no pretrained VGG may be
downloaded here): L1 in the holes (x6) and outside (x1) plus total variation of the
composite around the holes (x0.1), which keeps fills free of seams.

`tinct train-restore` resumes from OUT/checkpoint.pt like the colorization loop.
"""

import json
import os

import numpy as np
import torch
from torch.nn import functional as F

from ..color import rgb_to_lab
from ..damage import DamageSimulator
from ..models.pconv import PConvUNet, composite
from ..restore import harmonic_fill
from .data import load_corpus, random_crop
from .loop import CHECKPOINT, pick_device, train_steps

HOLE_WEIGHT, VALID_WEIGHT, TV_WEIGHT = 6.0, 1.0, 0.1


class RestoreBatchMaker:
    """Random crops of the corpus photos' L with simulated damage."""

    def __init__(self, images, crop=128, seed=0):
        self.images = images
        self.crop = crop
        self.rng = np.random.default_rng(seed)
        self.damage = DamageSimulator(self.rng)

    def sample(self):
        rgb = self.images[int(self.rng.integers(len(self.images)))]
        crop = random_crop(self.rng, rgb, self.crop, min_scale=0.0)  # any scale from the crop's to the photo's
        l = rgb_to_lab(crop)[..., 0]
        mask = self.damage.mask(self.crop, self.crop)
        return l, mask, harmonic_fill(l, mask < 0.5)

    def batch(self, n):
        ls, masks, bases = zip(*(self.sample() for _ in range(n)))
        return {"l": np.stack(ls)[:, None].astype(np.float32), "mask": np.stack(masks)[:, None],
                "base": np.stack(bases)[:, None].astype(np.float32)}


def damage_fill(l, mask, rng):
    """What the holes hold in training: white or black marks, or noise (the network never sees it)."""
    kind = rng.integers(3)
    fill = torch.full_like(l, 100.0) if kind == 0 else (torch.zeros_like(l) if kind == 1 else torch.rand_like(l) * 100)
    return l * mask + fill * (1 - mask)


def restore_loss(model, batch, rng):
    l, mask = batch["l"], batch["mask"]
    out = model(damage_fill(l, mask, rng), mask, batch["base"])
    hole = 1.0 - mask
    err = (out - l).abs() / 100.0
    hole_l1 = (err * hole).sum() / hole.sum().clamp(min=1.0)
    valid_l1 = (err * mask).mean()
    comp = composite(l, mask, out) / 100.0
    # total variation where a hole touches: one pixel of dilation, as the paper's "P" region
    near = F.max_pool2d(hole, 3, stride=1, padding=1)
    tv = ((comp[..., :, 1:] - comp[..., :, :-1]).abs() * near[..., :, 1:]).mean() + \
         ((comp[..., 1:, :] - comp[..., :-1, :]).abs() * near[..., 1:, :]).mean()
    loss = HOLE_WEIGHT * hole_l1 + VALID_WEIGHT * valid_l1 + TV_WEIGHT * tv
    return loss, {"hole_l1": hole_l1.item(), "valid_l1": valid_l1.item()}


def load_restore_model(path, map_location="cpu"):
    state = torch.load(path, map_location=map_location, weights_only=False)
    if state.get("task") != "restore":
        raise ValueError("%s is not a restoration checkpoint" % path)
    model = PConvUNet(**state["config"])
    model.load_state_dict(state["model"])
    return model.eval(), state


def train_restore(corpus, out_dir, steps=8500, batch_size=16, crop=128, lr=5e-4, width=24, seed=0, limit=None,
                  checkpoint_every=100, threads=None, log=print, progress=True):
    """Train (or resume) the restoration network; returns the checkpoint path."""
    if threads:
        torch.set_num_threads(threads)
    if crop % 32:
        raise ValueError("--crop must be a multiple of 32 for the restoration network")
    os.makedirs(out_dir, exist_ok=True)
    device = pick_device()
    torch.manual_seed(seed)
    ckpt_path = os.path.join(out_dir, CHECKPOINT)
    state = torch.load(ckpt_path, map_location="cpu", weights_only=False) if os.path.exists(ckpt_path) else None
    config = state["config"] if state else {"width": width}
    model = PConvUNet(**config)
    if state:
        model.load_state_dict(state["model"])
    model.to(device).train()
    maker = RestoreBatchMaker(load_corpus(corpus, limit), crop=crop, seed=seed)
    return train_steps("restore", model, model.parameters(), maker,
                       lambda net, batch, _bins: restore_loss(net, batch, maker.rng), out_dir, steps, batch_size, lr,
                       {"config": config, "task": "restore"}, state, log, progress, checkpoint_every, device,
                       betas=(0.9, 0.999))


def export_restore(ckpt_path, out_path, opset=17):
    """Restoration checkpoint -> ONNX (inputs l, mask, base; output restored), sides dynamic (multiples of 32)."""
    import warnings

    from .. import __version__
    from .export import write_metadata

    model, state = load_restore_model(ckpt_path)
    dummy = (torch.rand(1, 1, 64, 96) * 100, torch.ones(1, 1, 64, 96), torch.rand(1, 1, 64, 96) * 100)
    axes = {name: {0: "batch", 2: "height", 3: "width"} for name in ("l", "mask", "base", "restored")}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, dummy, out_path, input_names=["l", "mask", "base"], output_names=["restored"],
                          dynamic_axes=axes, opset_version=opset, dynamo=False, do_constant_folding=True)
    write_metadata(out_path, {"tinct_version": __version__, "task": "restore", "config": json.dumps(state["config"]),
                              "train_step": str(state["step"]), "size_multiple": str(2 ** model.depth)})
    return out_path
