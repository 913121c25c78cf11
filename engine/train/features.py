"""The frozen encoder's features of random corpus crops, computed once and kept on disk.

Why: with the encoder frozen, its features of a crop never change, and computing them is most of
a training step's cost on a CPU. So `tinct train --model lite0` first caches K random crops of
every training photo (scale, position, flip) with their four feature maps, in float16 memory-
mapped arrays; the head then trains on windows of those crops at a fraction of the cost.

Layout of a cache folder: meta.json (what was cached, and how far: caching resumes), rgb.npy
(N, S, S, 3) uint8, and f4.npy .. f32.npy (N, C, S/stride, S/stride) float16.
"""

import json
import os

import numpy as np
from PIL import Image

from ..models.efficientnet import FEATURE_CHANNELS, FEATURE_NAMES, MULTIPLE

STRIDES = tuple(int(name[1:]) for name in FEATURE_NAMES)
META = "meta.json"


def random_crop(rng, rgb, side, max_zoom=1.25):
    """A side x side crop of the photo scaled so its short side is between `side` (the whole
    photo's view at the working size, as users' photos are seen) and max_zoom times that; flipped
    half the time."""
    h, w = rgb.shape[:2]
    scale = rng.uniform(side, side * max_zoom) / min(h, w)
    nh, nw = max(side, int(round(h * scale))), max(side, int(round(w * scale)))
    im = np.asarray(Image.fromarray(rgb).resize((nw, nh), Image.BICUBIC, reducing_gap=2.0))
    y, x = int(rng.integers(0, nh - side + 1)), int(rng.integers(0, nw - side + 1))
    crop = im[y:y + side, x:x + side]
    return np.ascontiguousarray(crop[:, ::-1] if rng.random() < 0.5 else crop)


class CorpusFeatures:
    """Read side: the crops and their features, memory-mapped."""

    def __init__(self, folder):
        with open(os.path.join(folder, META)) as f:
            self.meta = json.load(f)
        if self.meta["done"] < self.meta["count"]:
            raise ValueError("feature cache %s is incomplete (%d of %d crops)" % (folder, self.meta["done"],
                                                                                 self.meta["count"]))
        self.rgb = np.load(os.path.join(folder, "rgb.npy"), mmap_mode="r")
        self.features = [np.load(os.path.join(folder, name + ".npy"), mmap_mode="r") for name in FEATURE_NAMES]
        self.side = self.meta["side"]

    def __len__(self):
        return self.meta["count"]

    def window(self, i, y, x, size):
        """Crop i's pixels and features in the window at (y, x) of side `size` (multiples of 32)."""
        rgb = np.asarray(self.rgb[i, y:y + size, x:x + size])
        feats = [np.asarray(f[i, :, y // s:(y + size) // s, x // s:(x + size) // s], np.float32)
                 for f, s in zip(self.features, STRIDES)]
        return rgb, feats


def build_cache(paths, folder, encoder, crops_per_photo=4, side=256, seed=0, batch=8, progress=True):
    """Cache `crops_per_photo` random crops of each photo; resumes where an earlier call stopped.
    encoder: callable (N, 1, S, S) L tensor -> four feature tensors (engine.models.efficientnet.Encoder)."""
    want = {"photos": [os.path.basename(p) for p in paths], "crops_per_photo": crops_per_photo, "side": side,
            "seed": seed, "count": len(paths) * crops_per_photo}

    def make_crop(i):
        # crop k of photo p depends on (seed, p, k) alone, so a resumed cache is the same cache
        p, k = divmod(i, crops_per_photo)
        with Image.open(paths[p]) as im:
            rgb = np.asarray(im.convert("RGB"))
        return random_crop(np.random.default_rng([seed, p, k]), rgb, side)

    return cache_crops(folder, want, make_crop, encoder, batch=batch, progress=progress)


def cache_crops(folder, want, make_crop, encoder, batch=8, progress=True, desc="encoder features"):
    """Cache want["count"] crops (make_crop(i) -> (side, side, 3) uint8, a function of i alone) and
    the encoder's features of each; resumes where an earlier call stopped. `want` (with "side" and
    "count") is recorded in meta.json: a folder holding other crops is refused, not mixed."""
    import torch

    from ..color import rgb_to_lab

    side, count = want["side"], want["count"]
    if side % MULTIPLE:
        raise ValueError("the cached crops' side must be a multiple of %d" % MULTIPLE)
    os.makedirs(folder, exist_ok=True)
    meta_path = os.path.join(folder, META)
    meta = dict(want, done=0)
    if os.path.exists(meta_path):
        with open(meta_path) as f:
            old = json.load(f)
        if any(old.get(k) != v for k, v in want.items()):
            raise ValueError("%s caches other crops (other photos, count, side or seed); use a new folder" % folder)
        meta = old
    mode = "r+" if meta["done"] else "w+"
    rgb_out = np.lib.format.open_memmap(os.path.join(folder, "rgb.npy"), mode, np.uint8, (count, side, side, 3))
    feat_out = [np.lib.format.open_memmap(os.path.join(folder, name + ".npy"), mode, np.float16,
                                          (count, ch, side // s, side // s))
                for name, ch, s in zip(FEATURE_NAMES, FEATURE_CHANNELS, STRIDES)]
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=count, initial=meta["done"], desc=desc, unit="crop")
    done = meta["done"]
    while done < count:
        idx = range(done, min(count, done + batch))
        crops = [make_crop(i) for i in idx]
        l = torch.from_numpy(np.stack([rgb_to_lab(c)[..., 0] for c in crops])[:, None].astype(np.float32))
        with torch.no_grad():
            feats = encoder(l)
        rgb_out[idx.start:idx.stop] = np.stack(crops)
        for out, f in zip(feat_out, feats):
            out[idx.start:idx.stop] = f.numpy().astype(np.float16)
        done = idx.stop
        if done % (batch * 25) == 0 or done == count:
            for out in [rgb_out] + feat_out:
                out.flush()
            meta["done"] = done
            _write_json(meta_path, meta)
        if bar:
            bar.update(len(idx))
    if bar:
        bar.close()
    return folder


def _write_json(path, payload):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(payload, f)
    os.replace(tmp, path)
