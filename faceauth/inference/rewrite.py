"""Exact load-time rewrites of ONNX graphs that ONNX Runtime's CPU provider runs slowly.

`PRelu(x, a)` with a per-channel slope is the one that matters here: onnxruntime 1.32 runs it slowly, outside
the blocked (NCHWc) conv layout with a layout reorder before and after it, and it takes about half of
w600k_mbf's time and a third of MiniFASNetV2's (docs/PERFORMANCE.md). For a slope a <= 1,
`PRelu(x) = Max(x, a * x)` bit for bit (x >= 0: a*x <= x; x < 0: a*x >= x), and ONNX Runtime turns the
per-channel Mul into a blocked depthwise conv: at batch 1 on one thread w600k_mbf runs 1.8x and MiniFASNetV2
1.2x as fast, and /v1/analyze answers about 10 % more images per second.

Edits the graph with the `onnx` package (a dependency of the service for this).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def prelu_as_max(model) -> int:
    """Rewrites, in place, every PRelu whose slope is a constant <= 1 as Max(x, Mul(x, slope)).

    Returns the number of nodes rewritten. Other PRelus (a computed slope, or any slope above 1) are kept.
    """
    from onnx import helper, numpy_helper  # imported when a model loads, not with the module

    graph = model.graph
    constants = {init.name: init for init in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.output:
            for attr in node.attribute:
                if attr.name == "value":
                    constants[node.output[0]] = attr.t
    names = {n.name for n in graph.node} | {out for n in graph.node for out in n.output}
    rewritten = 0
    nodes = []
    for node in graph.node:
        slope = constants.get(node.input[1]) if node.op_type == "PRelu" and node.domain in ("", "ai.onnx") else None
        if slope is None or not np.all(numpy_helper.to_array(slope) <= 1):
            nodes.append(node)
            continue
        x, a = node.input
        (y,) = node.output
        scaled = _unique(f"{y}__prelu_ax", names)
        base = node.name or y
        nodes.append(helper.make_node("Mul", [x, a], [scaled], name=_unique(f"{base}__mul", names)))
        nodes.append(helper.make_node("Max", [x, scaled], [y], name=_unique(f"{base}__max", names)))
        rewritten += 1
    if rewritten:
        del graph.node[:]
        graph.node.extend(nodes)
    return rewritten


def _unique(name: str, taken: set[str]) -> str:
    candidate, k = name, 1
    while candidate in taken:
        candidate, k = f"{name}_{k}", k + 1
    taken.add(candidate)
    return candidate


def cpu_model(path: Path | str) -> bytes | None:
    """The serialized model at `path` with the CPU rewrites applied, or None to load the file as it is (nothing
    to rewrite, or weights in external files)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    if not any(n.op_type == "PRelu" for n in model.graph.node):
        return None
    if any(init.data_location == onnx.TensorProto.EXTERNAL for init in model.graph.initializer):
        return None  # bytes cannot carry the external weights' location
    return model.SerializeToString() if prelu_as_max(model) else None
