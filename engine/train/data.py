"""Training samples from the corpus: random scale, crop and flip, then simulated
user hints as in Zhang et al. 2017 (geometric number of patches of size 1-9 at
Gaussian positions, revealing the patch's mean ab), their propagation along edges
(as the pipeline computes it at inference) and randomly dropped global hints."""

import glob
import os

import numpy as np
from PIL import Image

from ..color import rgb_to_lab
from ..gamut import soft_encode
from ..hints import GLOBAL_DIM, NUM_BINS, mean_saturation
from ..levin import propagate_hints

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def list_images(folder):
    return sorted(p for p in glob.glob(os.path.join(folder, "*")) if p.lower().endswith(IMAGE_EXTS))


def corpus_paths(folder, limit=None):
    """The training photos of a folder (the first `limit` of them when given)."""
    paths = list_images(folder)[:limit] if limit else list_images(folder)
    if not paths:
        raise FileNotFoundError("no training images in %s" % folder)
    return paths


def load_corpus(folder, limit=None):
    """Decode the training photos once into RGB uint8 arrays."""
    return load_images(corpus_paths(folder, limit))


def load_images(paths):
    images = []
    for p in paths:
        with Image.open(p) as im:
            images.append(np.asarray(im.convert("RGB")))
    return images


def random_crop(rng, rgb, crop, min_scale=0.5):
    """Random scale (short side between min_scale of the photo's, but at least `crop`, and all of
    it), crop and flip -> the crop."""
    h, w = rgb.shape[:2]
    short = min(h, w)
    lo = max(crop, min_scale * short)
    target = rng.uniform(lo, max(lo, short))  # photos smaller than the crop are scaled up
    scale = target / short
    nh, nw = max(crop, int(round(h * scale))), max(crop, int(round(w * scale)))
    if (nh, nw) != (h, w):
        rgb = np.asarray(Image.fromarray(rgb).resize((nw, nh), Image.BILINEAR, reducing_gap=2.0))
    y = int(rng.integers(0, nh - crop + 1))
    x = int(rng.integers(0, nw - crop + 1))
    rgb = rgb[y:y + crop, x:x + crop]
    if rng.random() < 0.5:
        rgb = rgb[:, ::-1]
    return np.ascontiguousarray(rgb)


class HintSimulator:
    """Samples local and global hints for one training crop."""

    def __init__(self, rng, p_no_hints=0.3, geometric_p=1.0 / 8, max_points=64, p_hist=0.2, p_sat=0.2):
        self.rng = rng
        self.p_no_hints = p_no_hints
        self.geometric_p = geometric_p
        self.max_points = max_points
        self.p_hist = p_hist
        self.p_sat = p_sat

    def num_points(self):
        if self.rng.random() < self.p_no_hints:
            return 0
        return int(min(self.rng.geometric(self.geometric_p), self.max_points))

    def local(self, ab):
        """ab (H, W, 2) -> hint ab (H, W, 2) and mask (H, W)."""
        h, w = ab.shape[:2]
        hint_ab = np.zeros_like(ab)
        mask = np.zeros((h, w), np.float32)
        for _ in range(self.num_points()):
            size = int(self.rng.integers(1, 10))
            cy = int(np.clip(self.rng.normal(h / 2, h / 4), 0, h - size))
            cx = int(np.clip(self.rng.normal(w / 2, w / 4), 0, w - size))
            patch = ab[cy:cy + size, cx:cx + size]
            hint_ab[cy:cy + size, cx:cx + size] = patch.reshape(-1, 2).mean(0)
            mask[cy:cy + size, cx:cx + size] = 1.0
        return hint_ab, mask

    def sample(self, rgb):
        """One training sample of an RGB crop (sides multiples of 4): L, ab, simulated local hints,
        their propagation along edges (as the pipeline computes it) and global hints, channels first."""
        lab = rgb_to_lab(rgb)
        l, ab = lab[..., 0], lab[..., 1:]
        hint_ab, mask = self.local(ab)
        h, w = l.shape
        ab_small = ab.reshape(h // 4, 4, w // 4, 4, 2).mean((1, 3))
        return {"l": l[None], "ab": ab.transpose(2, 0, 1), "hint_ab": hint_ab.transpose(2, 0, 1),
                "hint_mask": mask[None], "hint_prop": propagate_hints(l, hint_ab, mask).transpose(2, 0, 1),
                "global_hints": self.global_vector(rgb, ab_small)}

    def global_vector(self, rgb, ab_small):
        vec = np.zeros(GLOBAL_DIM, np.float32)
        if self.rng.random() < self.p_hist:
            vec[:NUM_BINS] = soft_encode(ab_small.reshape(-1, 2)).mean(0)
            vec[NUM_BINS] = 1.0
        if self.rng.random() < self.p_sat:
            vec[NUM_BINS + 1] = mean_saturation(rgb)
            vec[NUM_BINS + 2] = 1.0
        return vec


class BatchMaker:
    """Builds numpy training batches (NCHW float32) from decoded photos."""

    def __init__(self, images, crop=128, seed=0, min_scale=0.5):
        self.images = images
        self.crop = crop
        self.min_scale = min_scale
        self.seed = seed
        self.reseed(np.random.default_rng(seed))

    def reseed(self, rng):
        """Draw every later sample from `rng` (crops, flips and hints alike)."""
        self.rng = rng
        self.hints = HintSimulator(rng)

    def sample(self):
        return self.hints.sample(
            random_crop(self.rng, self.images[int(self.rng.integers(len(self.images)))], self.crop, self.min_scale))

    def batch(self, size):
        return stack_samples([self.sample() for _ in range(size)])


def stack_samples(samples):
    """Training samples (dicts of arrays) -> one float32 batch."""
    return {k: np.stack([s[k] for s in samples]).astype(np.float32) for k in samples[0]}


_WORKER_MAKER = None  # the BatchMaker a forked worker inherited (its photos are shared, not copied)


def _batch_number(k, size):
    return numbered_batch(_WORKER_MAKER, k, size)


def numbered_batch(maker, k, size):
    """Batch number k of a parallel stream, made here: what a worker makes for the same k."""
    maker.reseed(np.random.default_rng([maker.seed, k]))
    return maker.batch(size)


class ParallelBatches:
    """Training batches made ahead in worker processes (`tinct train --workers N`).

    Why: a sample's crop, Lab conversion and two sparse solves for its propagated hints take
    about 0.04 s of one core, which a GPU step outruns many times over. Batch k draws from
    a generator seeded by (seed, k) alone, so the stream is the same for any number of workers
    and a resumed run carries on with the batches it would have had."""

    def __init__(self, maker, size, workers, start=0, ahead=None):
        import multiprocessing

        global _WORKER_MAKER
        _WORKER_MAKER = maker  # inherited through fork, before the pool starts
        self.pool = multiprocessing.get_context("fork").Pool(workers)
        self.size, self.next_k, self.ahead = size, start, ahead or 2 * workers
        self.pending = []

    def next(self):
        while len(self.pending) < self.ahead:
            self.pending.append(self.pool.apply_async(_batch_number, (self.next_k, self.size)))
            self.next_k += 1
        return self.pending.pop(0).get()

    def close(self):
        self.pool.terminate()
        self.pool.join()
