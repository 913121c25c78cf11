"""The training loop: resumable checkpoints, tqdm progress, CUDA when present.

Loss: a regression on ab plus a cross-entropy on the 313-bin distribution
(soft-encoded targets). The regression is Huber on ab (`--loss huber`, the default) or the
squared error in 8-bit sRGB, the metric's own space (`--loss rgb`, engine/train/rgb_loss.py).
Two schedules (`--schedule`):
- joint (default): both losses from the first step. With our CPU budget every
  step then trains the output that PSNR measures, while the distribution head,
  needed for color suggestions, still learns alongside.
- paper: as Zhang et al. 2017, the classification loss alone for the first half,
  then regression (with the classification loss kept at half weight so the
  suggestions stay sharp).
The model card records the measured comparison of the two.
"""

import json
import math
import os
import time

import numpy as np
import torch
from torch.nn import functional as F

from ..gamut import ab_bins
from ..models.colornet import ColorNet
from ..models.config import CONFIGS
from .data import BatchMaker, ParallelBatches, corpus_paths, load_images
from .holdout import BEST, heldout_scores, save_best, selection_score, split_paths
from .options import LOSSES, SCHEDULES
from .rgb_loss import rgb_mse

CHECKPOINT = "checkpoint.pt"
WEIGHTS = "weights.pt"
# ColorNet layers that start as a no-op, so older checkpoints resume
NEW_LAYERS = ("hint_summary", "prop_in", "reach_in", "prop_gate")
# ColorNet layers since removed, which older checkpoints may hold: the detector-features branch
# (removed 2026-12-04), a no-op in every checkpoint not trained with the features (those are
# refused, see refuse_features); loading drops them
RETIRED_LAYERS = ("semantic_in",)


def pick_device():
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def soft_targets(ab, bins, sigma=5.0, k=5):
    """ab (N, 2, h, w) -> soft 313-bin targets (N, 313, h, w) from the k nearest bins."""
    n, _, h, w = ab.shape
    flat = ab.permute(0, 2, 3, 1).reshape(-1, 2)
    d2 = torch.cdist(flat, bins).pow(2)
    near, idx = d2.topk(k, dim=1, largest=False)
    wts = torch.softmax(-near / (2 * sigma * sigma), dim=1)
    out = torch.zeros(flat.shape[0], bins.shape[0], device=ab.device)
    out.scatter_(1, idx, wts)
    return out.reshape(n, h, w, -1).permute(0, 3, 1, 2)


def loss_weights(step, total, schedule="joint"):
    """(regression weight, distribution weight) at this step."""
    if schedule not in SCHEDULES:
        raise ValueError("unknown loss schedule %r: %s" % (schedule, " or ".join(SCHEDULES)))
    if schedule == "paper" and step < total // 2:
        return 0.0, 1.0
    return 1.0, 0.5


def compute_loss(model, batch, bins, dist_weight=0.5, huber_delta=5.0, reg_weight=1.0, loss="huber"):
    ab_pred, logits = model(batch["l"], batch["hint_ab"], batch["hint_mask"], batch["global_hints"],
                            batch.get("hint_prop"))
    if loss not in LOSSES:
        raise ValueError("unknown regression loss %r: %s" % (loss, ", ".join(LOSSES)))
    terms = loss.split("+")
    reg = 0.0
    if "huber" in terms:
        reg = reg + F.huber_loss(ab_pred, batch["ab"], delta=huber_delta) / huber_delta
    if "rgb" in terms:
        reg = reg + rgb_mse(batch["l"], ab_pred, batch["ab"])
    target = soft_targets(F.avg_pool2d(batch["ab"], 4), bins)
    ce = -(target * F.log_softmax(logits, dim=1)).sum(1).mean()
    return reg_weight * reg + dist_weight * ce, {loss: reg.item(), "ce": ce.item()}


def lr_at(step, total, base_lr, warmup=100):
    if step < warmup:
        return base_lr * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return base_lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def train(corpus, out_dir, model_name="small", steps=4000, batch_size=16, crop=128, lr=5e-4,
          seed=0, limit=None, checkpoint_every=100, threads=None, log=print, progress=True, schedule="joint",
          init=None, loss="huber", holdout=0, eval_every=500, workers=0):
    """Train (or resume) a ColorNet; returns the path of the last checkpoint.

    holdout: keep this many corpus photos out of training and score them every `eval_every`
    steps with `tinct eval`'s protocol (engine/train/holdout.py); OUT/best.pt keeps the best
    weights so far, and OUT/log.jsonl the scores.

    workers: make batches ahead in this many processes (data.ParallelBatches), for a GPU or
    spare cores; batch k then depends on (seed, k) only, whatever the number of workers.

    loss: the regression loss, "huber" (on ab), "rgb" (squared error in sRGB, see rgb_loss), or
    "huber+rgb", their sum (Huber anchors ab where the sRGB term is blind: colors that clip alike).

    init: a weights file (WEIGHTS, written beside every checkpoint) to start from when out_dir has
    no checkpoint yet; training carries on from its step with a fresh optimizer, so a run can move
    to another machine (or session) with a few MB instead of the whole checkpoint."""
    if threads:
        torch.set_num_threads(threads)
    device = pick_device()
    torch.manual_seed(seed)
    model = ColorNet(CONFIGS[model_name]).to(device)
    os.makedirs(out_dir, exist_ok=True)
    opt = torch.optim.Adam(model.parameters(), lr=lr, betas=(0.9, 0.99))
    step = 0
    rewarm_from = None  # a fresh Adam on a trained network ramps its rate up again
    ckpt_path = os.path.join(out_dir, CHECKPOINT)
    train_paths, held_out = split_paths(corpus_paths(corpus, limit), holdout)
    images = load_images(train_paths)
    maker = BatchMaker(images, crop=crop, seed=seed)
    if os.path.exists(ckpt_path):
        state = torch.load(ckpt_path, map_location=device, weights_only=False)
        if state["model_name"] != model_name:
            raise ValueError("checkpoint in %s is a %r model, not %r" % (out_dir, state["model_name"], model_name))
        refuse_features(state, "checkpoint in %s" % out_dir)
        if state.get("holdout", 0) != holdout:  # else held-out photos would leak into training
            raise ValueError("checkpoint in %s was trained with --holdout %d; resume it with the same"
                             % (out_dir, state.get("holdout", 0)))
        if load_weights(model, state["model"]):
            opt.load_state_dict(state["optimizer"])
        else:
            log("the checkpoint's layers differ from the network's (added or removed since); new ones start fresh, "
                "and so does Adam's state")
            rewarm_from = state["step"]
        step = state["step"]
        maker.rng.bit_generator.state = state["rng"]
        log("resumed from step %d (%s)" % (step, ckpt_path))
    elif init:
        state = torch.load(init, map_location=device, weights_only=False)
        if state["model_name"] != model_name:
            raise ValueError("%s holds a %r model, not %r" % (init, state["model_name"], model_name))
        refuse_features(state, init)
        load_weights(model, state["model"])
        step = rewarm_from = state["step"]
        log("started from the weights of step %d (%s)" % (step, init))
        if holdout and state.get("holdout", 0) != holdout:
            log("warning: the run behind %s did not hold out the same photos, so the held-out scores "
                "flatter it (it trained on them)" % init)
    bins = torch.from_numpy(ab_bins()).to(device)
    model.train()
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=steps, initial=step, desc="train %s" % model_name, unit="step")
    history = []
    started = time.time()
    stream = ParallelBatches(maker, batch_size, workers, start=step) if workers else None
    try:
        while step < steps:
            for group in opt.param_groups:
                group["lr"] = lr_at(step, steps, lr) * (
                    1.0 if rewarm_from is None else min(1.0, (step - rewarm_from + 1) / 100.0))
            raw = stream.next() if stream else maker.batch(batch_size)
            batch = {k: torch.from_numpy(v).to(device) for k, v in raw.items()}
            reg_w, dist_w = loss_weights(step, steps, schedule)
            total, parts = compute_loss(model, batch, bins, dist_weight=dist_w, reg_weight=reg_w, loss=loss)
            optimizer_step(opt, total, parts, history, bar)
            step += 1
            if step % checkpoint_every == 0 or step == steps:
                weights = save_checkpoint(ckpt_path, model, opt, step, maker, model_name, holdout)
                log_interval(out_dir, step, steps, started, device, history, model, weights, held_out, eval_every, log)
                history = []
    finally:
        if stream:
            stream.close()
        if bar:
            bar.close()
    return ckpt_path


def log_interval(out_dir, step, steps, started, device, history, model, weights, held_out, eval_every, log):
    """After a checkpoint: score the held-out photos when one is due, then log the interval's losses."""
    scores = {}
    if held_out and (step % eval_every == 0 or step == steps):
        scores = score_heldout(model, weights, device, held_out, out_dir, step, log)
    log_losses(out_dir, step, started, device, history, **{"heldout_%d" % n: round(v, 3) for n, v in scores.items()})


def score_heldout(model, weights, device, paths, out_dir, step, log):
    """Score the held-out photos now; keep `weights` (the model's, as just checkpointed) as
    OUT/best.pt when they are the best yet."""
    scores = heldout_scores(model, device, paths)
    best_path = os.path.join(out_dir, BEST)
    best = None
    if os.path.exists(best_path):
        best = selection_score(torch.load(best_path, map_location="cpu", weights_only=False)["heldout"])
    now = selection_score(scores)
    improved = best is None or now > best
    if improved:
        save_best(best_path, weights, step, scores)
    log("step %d held-out PSNR %s (best %.2f dB%s)" % (
        step, ", ".join("%d hints %.2f dB" % (n, v) for n, v in scores.items()), now if improved else best,
        ", new" if improved else ""))
    return scores


def save_checkpoint(path, model, opt, step, maker, model_name, holdout=0):
    """Write atomically so an interrupted run never leaves a broken checkpoint; the weights alone
    go beside it (WEIGHTS) for `--init` elsewhere. Returns them."""
    weights = {"model": model.state_dict(), "step": step, "model_name": model_name,
               "config": CONFIGS[model_name].to_dict(), "holdout": holdout}
    save_atomic(dict(weights, optimizer=opt.state_dict(), rng=maker.rng.bit_generator.state), path)
    save_atomic(weights, os.path.join(os.path.dirname(path), WEIGHTS))
    return weights


def optimizer_step(opt, loss, parts, history, bar=None):
    """One Adam step on `loss`; its loss parts go to the history (for the log) and the progress bar."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    history.append(parts)
    if bar:
        bar.update(1)
        bar.set_postfix({k: "%.3f" % v for k, v in parts.items()})


def log_losses(out_dir, step, started, device, history, **tags):
    """Append the mean losses since the last checkpoint to OUT/log.jsonl (tags first, e.g. stage)."""
    mean = {k: float(np.mean([h[k] for h in history])) for k in history[0]}
    with open(os.path.join(out_dir, "log.jsonl"), "a") as f:
        f.write(json.dumps(dict(tags, step=step, elapsed_s=round(time.time() - started, 1), device=str(device),
                                **mean)) + "\n")


def save_atomic(payload, path):
    tmp = path + ".tmp"
    torch.save(payload, tmp)
    os.replace(tmp, path)


def without_retired(weights):
    """A state dict less the RETIRED_LAYERS, at any depth (the fusion network holds two ColorNets)."""
    return {k: v for k, v in weights.items() if set(RETIRED_LAYERS).isdisjoint(k.split("."))}


def refuse_features(state, where):
    """Weights trained with the detector's features lean on a branch the network no longer has."""
    if state.get("semantic"):
        raise ValueError("%s was trained with the detector's features, which the network no longer takes "
                         "(removed 2026-12-04); use weights trained without them, e.g. "
                         "tools/checkpoints/tinct-small.pt" % where)


def load_weights(model, weights):
    """Load a state dict; layers added to ColorNet since (a fresh no-op start) may be missing, and
    layers since removed (RETIRED_LAYERS) are ignored. Returns True when the weights fit the network
    exactly (every layer there, none dropped), so that the optimizer's state saved with them fits too."""
    missing, unexpected = model.load_state_dict(without_retired(weights), strict=False)
    new_layers = tuple(name + "." for name in NEW_LAYERS)
    if unexpected or any(not k.startswith(new_layers) for k in missing):
        raise ValueError("checkpoint does not fit the network: missing %s, unexpected %s" % (missing, unexpected))
    return not missing and len(weights) == len(model.state_dict())


def load_model(ckpt_path, map_location="cpu"):
    state = torch.load(ckpt_path, map_location=map_location, weights_only=False)
    refuse_features(state, ckpt_path)
    model = ColorNet(CONFIGS[state["model_name"]])
    load_weights(model, state["model"])
    return model.eval(), state


def begin_stage(out_dir, threads, seed):
    """How every stage starts: torch's threads, the run folder, the seed. Returns the device."""
    if threads:
        torch.set_num_threads(threads)
    os.makedirs(out_dir, exist_ok=True)
    torch.manual_seed(seed)
    return pick_device()


def freeze(*modules):
    """Modules that a stage keeps as they are: no gradients, BatchNorm statistics fixed (eval)."""
    for module in modules:
        module.eval()
        for p in module.parameters():
            p.requires_grad_(False)


def train_steps(stage, model, params, maker, loss_fn, out_dir, steps, batch_size, lr, extra_state, resume_state, log,
                progress, checkpoint_every, device, betas=(0.9, 0.99)):
    """The step loop the instance, fusion and restoration stages share: Adam on `params`, warm-up then
    cosine decay, a checkpoint (model, optimizer, step, data rng, stage + extra_state) and a log line
    every `checkpoint_every` steps; resumes from resume_state. loss_fn(model, batch, bins) -> (loss, parts)."""
    opt = torch.optim.Adam(params, lr=lr, betas=betas)
    ckpt_path = os.path.join(out_dir, CHECKPOINT)
    step = 0
    if resume_state is not None:
        opt.load_state_dict(resume_state["optimizer"])
        step = resume_state["step"]
        maker.rng.bit_generator.state = resume_state["rng"]
        log("resumed %s stage from step %d (%s)" % (stage, step, ckpt_path))
    bins = torch.from_numpy(ab_bins()).to(device)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=steps, initial=step, desc="train %s" % stage, unit="step")
    history, started = [], time.time()
    while step < steps:
        for group in opt.param_groups:
            group["lr"] = lr_at(step, steps, lr, warmup=min(100, max(1, steps // 10)))
        batch = {k: torch.from_numpy(v).to(device) for k, v in maker.batch(batch_size).items()}
        loss, parts = loss_fn(model, batch, bins)
        optimizer_step(opt, loss, parts, history, bar)
        step += 1
        if step % checkpoint_every == 0 or step == steps:
            payload = {"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step,
                       "rng": maker.rng.bit_generator.state, "stage": stage}
            payload.update(extra_state)
            save_atomic(payload, ckpt_path)
            log_losses(out_dir, step, started, device, history, stage=stage)
            history = []
    if bar:
        bar.close()
    return ckpt_path
