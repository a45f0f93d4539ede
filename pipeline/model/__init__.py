"""Checkpoints to ONNX artifacts: resolve the weights, export with Optimum, build the variants, validate the graph and its parity."""
