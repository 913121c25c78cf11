"""Network definitions (torch). Inference never imports this: it runs the ONNX export."""
