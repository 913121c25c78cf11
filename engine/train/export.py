"""Export a trained checkpoint to ONNX (`tinct export`), with the model's
provenance in the file's metadata so `tinct` can tell which weights it runs."""

import json
import warnings

import torch

from .. import __version__
from ..hints import GLOBAL_DIM
from ..runtime import INPUTS, OUTPUTS
from .loop import load_model


def export_onnx(ckpt_path, out_path, opset=17, extra_metadata=None):
    model, state = load_model(ckpt_path)
    h = w = 64
    dummy = (torch.rand(1, 1, h, w) * 100, torch.zeros(1, 2, h, w), torch.zeros(1, 1, h, w), torch.zeros(1, GLOBAL_DIM),
             torch.zeros(1, 3, h, w))
    axes = {name: {0: "batch", 2: "height", 3: "width"} for name in INPUTS[:3] + INPUTS[4:] + OUTPUTS}
    axes["global_hints"] = {0: "batch"}
    with warnings.catch_warnings():  # the TorchScript exporter is deprecated but handles our plain CNN best
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(model, dummy, out_path, input_names=list(INPUTS), output_names=list(OUTPUTS),
                          dynamic_axes=axes, opset_version=opset, dynamo=False, do_constant_folding=True)
    meta = {"tinct_version": __version__, "model_name": state["model_name"], "config": json.dumps(state["config"]),
            "train_step": str(state["step"]), "size_multiple": "8"}
    meta.update(extra_metadata or {})
    write_metadata(out_path, meta)
    return out_path


def write_metadata(onnx_path, meta):
    """Stamp key/value provenance into an exported ONNX file (what `ModelRuntime.metadata` reads back)."""
    import onnx

    m = onnx.load(onnx_path)
    for key, value in meta.items():
        entry = m.metadata_props.add()
        entry.key, entry.value = key, str(value)
    onnx.save(m, onnx_path)
