"""The ONNX model on onnxruntime: CUDA when onnxruntime-gpu and a GPU are present,
the CPU otherwise. Inference never imports torch.

A pretrained-encoder model comes as two files: the head (the model file; its metadata names the
encoder) and the encoder beside it. The encoder's features of the last few photos are kept
(PhotoFeatures), so a hint edit on the same photo runs only the head."""

import collections
import hashlib
import json
import os
import threading

import numpy as np

from . import TinctError

WEIGHTS_DIR = os.path.join(os.path.dirname(__file__), "weights")
DEFAULT_MODEL = os.path.join(WEIGHTS_DIR, "tinct-lite0.onnx")
INPUTS = ("l", "hint_ab", "hint_mask", "global_hints", "hint_prop")
OUTPUTS = ("ab", "dist_logits")


def available_providers():
    import onnxruntime as ort

    return ort.get_available_providers()


class PhotoFeatures:
    """The encoder's features of the last few photos, keyed by their working-size L: a hint edit
    (GIMP's Colorize Again, an interactive window, `tinct colorize --engine` with new hints) then
    runs only the head. Same L, same features: the cached path gives the uncached pixels exactly."""

    def __init__(self, size=4):
        self.size = size
        self.entries = collections.OrderedDict()
        self.lock = threading.Lock()
        self.hits = 0

    def get(self, l, compute):
        key = (l.shape, hashlib.blake2b(np.ascontiguousarray(l).tobytes(), digest_size=16).digest())
        with self.lock:
            if key in self.entries:
                self.entries.move_to_end(key)
                self.hits += 1
                return self.entries[key]
        value = compute(l)
        with self.lock:
            self.entries[key] = value
            while len(self.entries) > self.size:
                self.entries.popitem(last=False)
        return value


def pad_to(a, multiple, mode):
    """Pad the last two axes of an NCHW array at the bottom and right to multiples of `multiple`."""
    ph, pw = -a.shape[2] % multiple, -a.shape[3] % multiple
    return np.pad(a, ((0, 0), (0, 0), (0, ph), (0, pw)), mode=mode) if ph or pw else a


class ModelRuntime:
    """One loaded colorization network."""

    def __init__(self, path=None, device="auto", threads=None):
        import onnxruntime as ort

        self.path = path or os.environ.get("TINCT_MODEL") or DEFAULT_MODEL
        if not os.path.exists(self.path):
            raise TinctError("model file %s is missing; reinstall Tinct or pass --model" % self.path)
        providers = ["CPUExecutionProvider"]
        if device in ("auto", "cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        elif device == "cuda":
            raise TinctError("--device cuda asked for, but onnxruntime has no CUDA provider (pip install 'tinct[gpu]')")
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL

        def session(path):
            try:
                return ort.InferenceSession(path, opts, providers=providers)
            except Exception as exc:
                raise TinctError("model file %s cannot be loaded (%s)" % (path, exc))

        self.session = session(self.path)
        self.device = "cuda" if self.session.get_providers()[0] == "CUDAExecutionProvider" else "cpu"
        meta = self.session.get_modelmeta().custom_metadata_map
        self.metadata = {k: (json.loads(v) if v[:1] in "{[" else v) for k, v in meta.items()}
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.encoder = self.features = None
        if self.metadata.get("encoder"):
            encoder_path = os.path.join(os.path.dirname(self.path), self.metadata["encoder"])
            if not os.path.exists(encoder_path):
                raise TinctError("encoder file %s (of model %s) is missing; reinstall Tinct" % (encoder_path, self.path))
            self.encoder = session(encoder_path)
            self.feature_names = [o.name for o in self.encoder.get_outputs()]
            self.multiple = int(self.metadata.get("size_multiple", 32))
            self.features = PhotoFeatures()

    @property
    def feature_cache_hits(self):
        """How often a photo's encoder features were reused (0 for a model without an encoder)."""
        return self.features.hits if self.features else 0

    @property
    def wants_hint_prop(self):
        """Whether this model takes the propagated hints (engine.levin.propagate_hints) as an input."""
        return "hint_prop" in self.input_names

    def run(self, l, hint_ab, hint_mask, global_hints, hint_prop=None):
        """NCHW float32 arrays in natural units -> (ab (N,2,H,W), dist_logits (N,313,H/4,W/4)).
        hint_prop (N,3,H,W) is fed to models that take it (zeros when not given)."""
        if self.encoder is not None:
            return self._run_pretrained(l, hint_ab, hint_mask, global_hints, hint_prop)
        feeds = {
            "l": np.ascontiguousarray(l, np.float32),
            "hint_ab": np.ascontiguousarray(hint_ab, np.float32),
            "hint_mask": np.ascontiguousarray(hint_mask, np.float32),
            "global_hints": np.ascontiguousarray(global_hints, np.float32),
        }
        if self.wants_hint_prop:
            n, _, h, w = feeds["hint_ab"].shape
            feeds["hint_prop"] = (np.zeros((n, 3, h, w), np.float32) if hint_prop is None
                                  else np.ascontiguousarray(hint_prop, np.float32))
        ab, dist = self.session.run(list(OUTPUTS), feeds)
        return ab, dist

    def encode(self, l):
        """The encoder's features of L (NCHW, sides multiples of self.multiple), kept by its pixels."""
        return self.features.get(l, lambda x: self.encoder.run(self.feature_names, {"l": x}))

    def _run_pretrained(self, l, hint_ab, hint_mask, global_hints, hint_prop):
        """Encoder (cached per L) + head on sides padded to the encoder's multiple, then cropped:
        L by edge replication, hints with zeros (no hint there), as in training's torch network."""
        h, w = l.shape[2:]
        if hint_prop is None:
            hint_prop = np.zeros((l.shape[0], 3, h, w), np.float32)
        l = pad_to(np.ascontiguousarray(l, np.float32), self.multiple, "edge")
        feeds = dict(zip(self.feature_names, self.encode(l)), l=l, global_hints=np.ascontiguousarray(global_hints, np.float32))
        for name, a in (("hint_ab", hint_ab), ("hint_mask", hint_mask), ("hint_prop", hint_prop)):
            feeds[name] = pad_to(np.ascontiguousarray(a, np.float32), self.multiple, "constant")
        ab, dist = self.session.run(list(OUTPUTS), feeds)
        return ab[:, :, :h, :w], dist[:, :, :h // 4, :w // 4]
