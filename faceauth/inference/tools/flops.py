"""FLOPs of an ONNX model for one concrete input shape.

The count is the usual one for CNN inference: **2 × multiply-accumulates of the linear layers**:

- `Conv`: N · C_out · prod(output spatial) · (C_in / group) · prod(kernel), so a depthwise conv
  (group = C_in) costs C_in times less than a dense one of the same shape;
- `ConvTranspose`: N · C_in · prod(input spatial) · (C_out / group) · prod(kernel);
- `Gemm`: M · N · K;  `MatMul`: M · N · K per (broadcast) batch matrix, with numpy's 1-D rules;
- their quantized forms (`QLinearConv`, `ConvInteger`, `QLinearMatMul`, `MatMulInteger`), counted like the
  float op, so an int8 model has the same count as the float model it came from (integer ops, strictly).

Not counted: bias additions, activations (Relu, PRelu, Sigmoid, ...), element-wise arithmetic, normalisation
(BatchNormalization is usually folded into the conv by ONNX Runtime), pooling, Resize, Softmax, data movement
(Reshape, Concat, Transpose, ...), Quantize/DequantizeLinear, and anything inside subgraphs (If/Loop/Scan
bodies). For the convolutional models here these are a few percent of the arithmetic; they are memory-bound
work, not what a FLOP/s figure measures.

Shapes come from ONNX shape inference after the graph's dynamic input dimensions are fixed, so a count is for
one input shape (a fully convolutional detector costs more at 640 px than at 320 px).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper, shape_inference

COUNTED_OPS = (
    "Conv",
    "ConvTranspose",
    "Gemm",
    "MatMul",
    "QLinearConv",
    "ConvInteger",
    "QLinearMatMul",
    "MatMulInteger",
)


@dataclass
class FlopCount:
    """FLOPs (2 × MACs) of one model run at `input_shapes`."""

    total: int
    by_op: dict[str, int]
    input_shapes: dict[str, tuple[int, ...]]
    nodes: list[tuple[str, str, int]] = field(default_factory=list, repr=False)  # (op type, node name, flops)

    @property
    def gflops(self) -> float:
        return self.total / 1e9


def _attr(node: onnx.NodeProto, name: str, default):
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def _real_inputs(graph: onnx.GraphProto) -> list[onnx.ValueInfoProto]:
    # Before IR 4 every initializer was also listed as a graph input; those are weights, not feeds.
    initializers = {i.name for i in graph.initializer}
    return [i for i in graph.input if i.name not in initializers]


def fix_input_shapes(
    model: onnx.ModelProto, input_shapes: Mapping[str, Sequence[int]] | Sequence[int] | None = None, *, batch: int = 1
) -> tuple[onnx.ModelProto, dict[str, tuple[int, ...]]]:
    """A copy of `model` with every graph input given a concrete shape.

    `input_shapes` maps input names to shapes, or is one shape for a single-input model. Inputs not named keep
    their fixed dimensions, and a dynamic first dimension becomes `batch`; any other dynamic dimension left
    over is an error (the count would depend on it).
    """
    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)
    inputs = _real_inputs(fixed.graph)
    if input_shapes is not None and not isinstance(input_shapes, Mapping):
        if len(inputs) != 1:
            raise ValueError(f"the model has {len(inputs)} inputs: name each one's shape")
        input_shapes = {inputs[0].name: tuple(input_shapes)}
    wanted = dict(input_shapes or {})
    unknown = set(wanted) - {i.name for i in inputs}
    if unknown:
        raise ValueError(f"no graph input named {sorted(unknown)}")
    shapes: dict[str, tuple[int, ...]] = {}
    for inp in inputs:
        dims = inp.type.tensor_type.shape.dim
        if inp.name in wanted:
            shape = tuple(int(d) for d in wanted[inp.name])
            if len(shape) != len(dims) and len(dims):
                raise ValueError(f"input {inp.name} has rank {len(dims)}, got shape {shape}")
        else:
            shape = tuple(
                d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else (batch if k == 0 else -1)
                for k, d in enumerate(dims)
            )
            if any(s < 0 for s in shape):
                raise ValueError(f"input {inp.name} has dynamic dims {_dims(dims)}: give its shape")
        inp.type.tensor_type.shape.Clear()
        for s in shape:
            inp.type.tensor_type.shape.dim.add().dim_value = s
        shapes[inp.name] = shape
    # Shapes the exporter recorded (often for batch 1 or another image size) would contradict the new ones.
    del fixed.graph.value_info[:]
    for out in fixed.graph.output:
        out.type.tensor_type.ClearField("shape")
    return fixed, shapes


def _dims(dims) -> list[int | str]:
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in dims]


def _known_shapes(model: onnx.ModelProto) -> dict[str, tuple[int, ...] | None]:
    shapes: dict[str, tuple[int, ...] | None] = {}
    g = model.graph
    for init in g.initializer:
        shapes[init.name] = tuple(init.dims)
    for vi in [*g.input, *g.value_info, *g.output]:
        t = vi.type.tensor_type
        if not t.HasField("shape"):
            continue
        dims = t.shape.dim
        shapes[vi.name] = (
            tuple(d.dim_value for d in dims) if all(d.HasField("dim_value") and d.dim_value > 0 for d in dims) else None
        )
    for node in g.node:  # Constant nodes carry their own shape (old exports keep weights in them)
        if node.op_type == "Constant" and node.output:
            value = _attr(node, "value", None)
            if value is not None:
                shapes[node.output[0]] = tuple(value.dims)
    return shapes


def _conv_macs(node: onnx.NodeProto, x: tuple[int, ...], w: tuple[int, ...], y: tuple[int, ...]) -> int:
    if node.op_type in ("ConvTranspose",):
        # weight (C_in, C_out / group, k...): every input pixel scatters into C_out/group × kernel outputs
        return x[0] * x[1] * math.prod(x[2:]) * w[1] * math.prod(w[2:])
    # weight (C_out, C_in / group, k...): every output pixel gathers C_in/group × kernel inputs
    return y[0] * y[1] * math.prod(y[2:]) * w[1] * math.prod(w[2:])


def _matmul_macs(a: tuple[int, ...], b: tuple[int, ...]) -> int:
    # numpy rules: a 1-D left operand is a row, a 1-D right operand a column; leading dims broadcast.
    if len(a) == 1:
        a = (1, *a)
    if len(b) == 1:
        b = (*b, 1)
    m, k = a[-2:]
    n = b[-1]
    batch = math.prod(np.broadcast_shapes(a[:-2], b[:-2]))
    return batch * m * n * k


def _gemm_macs(node: onnx.NodeProto, a: tuple[int, ...], b: tuple[int, ...]) -> int:
    m, k = (a[1], a[0]) if _attr(node, "transA", 0) else (a[0], a[1])
    n = b[0] if _attr(node, "transB", 0) else b[1]
    return m * n * k


# Ops whose value (not just shape) we compute when all their inputs are known: the Shape -> Gather -> Concat
# -> Cast chains exporters emit for Resize sizes and Reshape targets, which ONNX shape inference cannot read
# through (it takes Resize `sizes` only from initializers).
_FOLDABLE = {
    "Constant",
    "Shape",
    "Gather",
    "Unsqueeze",
    "Squeeze",
    "Concat",
    "Slice",
    "Cast",
    "Identity",
    "Add",
    "Sub",
    "Mul",
    "Div",
    "Floor",
    "Ceil",
}


def _fold_node(node: onnx.NodeProto, values: dict[str, np.ndarray], shapes: dict) -> np.ndarray | None:
    op = node.op_type
    if op == "Constant":
        value = _attr(node, "value", None)
        return None if value is None else numpy_helper.to_array(value)
    if op == "Shape":
        shape = shapes.get(node.input[0])
        if shape is None:
            return None
        start, end = _attr(node, "start", 0), _attr(node, "end", None)
        return np.array(shape[start:end], dtype=np.int64)
    args = [values.get(name) if name else None for name in node.input]
    if any(a is None for a, name in zip(args, node.input, strict=True) if name):
        return None
    if op == "Identity":
        return args[0]
    if op == "Gather":
        return np.take(args[0], args[1], axis=_attr(node, "axis", 0))
    if op in ("Unsqueeze", "Squeeze"):
        axes = _attr(node, "axes", None)
        axes = tuple(int(a) for a in (args[1] if len(args) > 1 and args[1] is not None else axes or ()))
        if op == "Squeeze":
            return np.squeeze(args[0], axis=axes or None)
        out = args[0]
        for axis in sorted(a % (out.ndim + len(axes)) for a in axes):
            out = np.expand_dims(out, axis)
        return out
    if op == "Concat":
        return np.concatenate([np.atleast_1d(a) for a in args], axis=_attr(node, "axis", 0))
    if op == "Slice":
        data, starts, ends = args[0], args[1], args[2]
        axes = args[3] if len(args) > 3 and args[3] is not None else range(len(starts))
        steps = args[4] if len(args) > 4 and args[4] is not None else [1] * len(starts)
        index = [slice(None)] * data.ndim
        for st, en, ax, sp in zip(starts, ends, axes, steps, strict=True):
            index[int(ax)] = slice(int(st), int(en), int(sp))
        return data[tuple(index)]
    if op == "Cast":
        return args[0].astype(helper.tensor_dtype_to_np_dtype(_attr(node, "to", 1)))
    if op in ("Floor", "Ceil"):
        return (np.floor if op == "Floor" else np.ceil)(args[0])
    if op == "Div" and np.issubdtype(args[0].dtype, np.integer):
        return args[0] // args[1]
    return {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.divide}[op](args[0], args[1])


def _fold_shape_values(model: onnx.ModelProto) -> bool:
    """Turn computed shape tensors feeding other ops into initializers. True when anything was replaced."""
    graph = model.graph
    shapes = _known_shapes(model)
    values = {i.name: numpy_helper.to_array(i) for i in graph.initializer if math.prod(i.dims) <= 64}
    initializers = {i.name for i in graph.initializer}
    folded: set[str] = set()
    for node in graph.node:
        if node.op_type not in _FOLDABLE or len(node.output) != 1:
            continue
        try:
            value = _fold_node(node, values, shapes)
        except (ValueError, IndexError, KeyError, TypeError):
            value = None
        if value is not None and value.size <= 64:
            values[node.output[0]] = np.asarray(value)
            folded.add(node.output[0])
    replaced = False
    for node in graph.node:
        if node.op_type in _FOLDABLE:
            continue
        for k, name in enumerate(node.input):
            if name in folded and name not in initializers:
                const = f"{name}__folded"
                if const not in initializers:
                    graph.initializer.append(numpy_helper.from_array(values[name], const))
                    initializers.add(const)
                node.input[k] = const
                replaced = True
    return replaced


def infer_shapes(model: onnx.ModelProto, max_rounds: int = 8) -> onnx.ModelProto:
    """ONNX shape inference, repeated after folding computed shape tensors until nothing more resolves."""
    inferred = shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
    for _ in range(max_rounds):
        if not _fold_shape_values(inferred):
            break
        del inferred.graph.value_info[:]
        inferred = shape_inference.infer_shapes(inferred, strict_mode=False, data_prop=True)
    return inferred


# Where the data, weight and output tensors sit among each counted op's inputs/outputs.
_OPERANDS = {
    "Conv": (0, 1),
    "ConvTranspose": (0, 1),
    "ConvInteger": (0, 1),
    "QLinearConv": (0, 3),  # x, x_scale, x_zero_point, w, ...
    "Gemm": (0, 1),
    "MatMul": (0, 1),
    "MatMulInteger": (0, 1),
    "QLinearMatMul": (0, 3),  # a, a_scale, a_zero_point, b, ...
}


def count_flops(
    model: str | Path | onnx.ModelProto,
    input_shapes: Mapping[str, Sequence[int]] | Sequence[int] | None = None,
    *,
    batch: int = 1,
) -> FlopCount:
    """FLOPs of one run of `model` (a path or a loaded ModelProto) at the given input shape(s).

    Raises ValueError when a counted node's operand shapes cannot be inferred: an undercount would look like a
    higher FLOP/s, so it is never silent.
    """
    proto = onnx.load(str(model)) if isinstance(model, str | Path) else model
    fixed, shapes_in = fix_input_shapes(proto, input_shapes, batch=batch)
    inferred = infer_shapes(fixed)
    shapes = _known_shapes(inferred)
    by_op: dict[str, int] = {}
    nodes: list[tuple[str, str, int]] = []
    for node in inferred.graph.node:
        if node.op_type not in _OPERANDS or node.domain not in ("", "ai.onnx", "com.microsoft"):
            continue
        ia, ib = _OPERANDS[node.op_type]
        a, b = shapes.get(node.input[ia]), shapes.get(node.input[ib])
        y = shapes.get(node.output[0])
        if a is None or b is None or (node.op_type in ("Conv", "QLinearConv", "ConvInteger") and y is None):
            raise ValueError(f"{node.op_type} node {node.name or node.output[0]!r}: operand shapes not inferred")
        if node.op_type in ("Conv", "ConvTranspose", "QLinearConv", "ConvInteger"):
            macs = _conv_macs(node, a, b, y or ())
        elif node.op_type == "Gemm":
            macs = _gemm_macs(node, a, b)
        else:
            macs = _matmul_macs(a, b)
        flops = 2 * macs
        kind = {"QLinearConv": "Conv", "ConvInteger": "Conv", "QLinearMatMul": "MatMul", "MatMulInteger": "MatMul"}.get(
            node.op_type, node.op_type
        )
        by_op[kind] = by_op.get(kind, 0) + flops
        nodes.append((node.op_type, node.name or node.output[0], flops))
    return FlopCount(total=sum(by_op.values()), by_op=by_op, input_shapes=shapes_in, nodes=nodes)
