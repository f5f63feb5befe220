"""Offline tools: int8 quantisation, `.pth` -> ONNX conversion, FLOP counting.

Run by the CLI and the benchmarks; the serving modules never import them (tests/inference/test_layout.py).
"""
