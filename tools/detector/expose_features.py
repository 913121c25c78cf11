"""Expose NanoDet's feature pyramid as two more outputs of engine/weights/detector/nanodet.onnx.

    python tools/detector/expose_features.py [PATH]      (default: the shipped detector)

The colorization network borrows the detector's features: NanoDet learned what objects look
like from all of COCO, which 1558 training photos cannot teach a colorizer (engine/semantics.py).
The PAN (path aggregation) outputs at stride 8 (after the top-down pass, so it also carries the
coarse levels) and stride 32 (after the bottom-up pass) become the outputs `semantic_s8`
(1, 128, 52, 52) and `semantic_s32` (1, 128, 13, 13). The box and class outputs are unchanged;
run after tools/detector/convert.sh (which it is part of). Idempotent.
"""

import sys

import onnx
from onnx import helper

FEATURES = {  # new output: tensor inside the converted graph (tf2onnx names, see NOTES.md)
    "semantic_s8": ("PartitionedCall/onnx_tf_prefix_Add_107:0", [1, 128, 52, 52]),
    "semantic_s32": ("PartitionedCall/onnx_tf_prefix_Add_149:0", [1, 128, 13, 13]),
}


def expose(path):
    model = onnx.load(path)
    graph = model.graph
    have = {o.name for o in graph.output}
    produced = {out for node in graph.node for out in node.output}
    for name, (tensor, shape) in FEATURES.items():
        if name in have:
            continue
        if tensor not in produced:
            raise SystemExit("%s: no tensor %s; is this the converted NanoDet graph?" % (path, tensor))
        graph.node.append(helper.make_node("Identity", [tensor], [name], name=name))
        graph.output.append(helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, shape))
    onnx.checker.check_model(model)
    onnx.save(model, path)
    print("%s: outputs %s" % (path, ", ".join(o.name for o in graph.output)))


if __name__ == "__main__":
    expose(sys.argv[1] if len(sys.argv) > 1 else "engine/weights/detector/nanodet.onnx")
