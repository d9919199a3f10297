"""PyTorch -> ONNX conversion: architectures, export, parity, quantization, model cards and training.

This package is the only place in catdog that imports PyTorch; the service reads what it writes
(`models/<name>/model.onnx` + `model.json`). Entry point: `python -m conversion` (see `conversion.cli`).
"""
