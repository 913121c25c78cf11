"""The ONNX model on onnxruntime: CUDA when onnxruntime-gpu and a GPU are present,
the CPU otherwise. Inference never imports torch."""

import json
import os

import numpy as np

from . import TinctError

WEIGHTS_DIR = os.path.join(os.path.dirname(__file__), "weights")
DEFAULT_MODEL = os.path.join(WEIGHTS_DIR, "tinct-small.onnx")
INPUTS = ("l", "hint_ab", "hint_mask", "global_hints", "hint_prop")
OUTPUTS = ("ab", "dist_logits")


def available_providers():
    import onnxruntime as ort

    return ort.get_available_providers()


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
        try:
            self.session = ort.InferenceSession(self.path, opts, providers=providers)
        except Exception as exc:
            raise TinctError("model file %s cannot be loaded (%s)" % (self.path, exc))
        self.device = "cuda" if self.session.get_providers()[0] == "CUDAExecutionProvider" else "cpu"
        meta = self.session.get_modelmeta().custom_metadata_map
        self.metadata = {k: (json.loads(v) if v[:1] in "{[" else v) for k, v in meta.items()}
        self.input_names = [i.name for i in self.session.get_inputs()]

    @property
    def wants_hint_prop(self):
        """Whether this model takes the propagated hints (engine.levin.propagate_hints) as an input."""
        return "hint_prop" in self.input_names

    def run(self, l, hint_ab, hint_mask, global_hints, hint_prop=None):
        """NCHW float32 arrays in natural units -> (ab (N,2,H,W), dist_logits (N,313,H/4,W/4)).
        hint_prop (N,3,H,W) is fed to models that take it (zeros when not given)."""
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
