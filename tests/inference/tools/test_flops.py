"""FLOPs counts of tiny hand-built ONNX graphs (counts worked out by hand) and of the real embedder/detector."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from faceauth.inference.artefacts import registry
from faceauth.inference.tools.flops import count_flops

OPSET = [helper.make_opsetid("", 13)]
OPSET_11 = [helper.make_opsetid("", 11)]


def _model(nodes, inputs, outputs, weights: dict[str, tuple[int, ...]], opset=OPSET) -> onnx.ModelProto:
    inits = [numpy_helper.from_array(np.zeros(shape, np.float32), name) for name, shape in weights.items()]
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=inits)
    model = helper.make_model(graph, opset_imports=opset)
    return model


def _in(name: str, shape) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def _out(name: str = "y") -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, None)


def test_dense_conv_is_two_macs_per_weight_per_output_pixel():
    conv = helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])
    model = _model([conv], [_in("x", [1, 3, 8, 8])], [_out()], {"w": (4, 3, 3, 3)})
    # 4 output channels x 8x8 pixels x (3 input channels x 3x3 kernel)
    assert count_flops(model).total == 2 * 4 * 64 * 3 * 9


def test_depthwise_and_grouped_convs_divide_by_groups():
    depthwise = helper.make_node("Conv", ["x", "w"], ["y"], group=4, strides=[2, 2], pads=[1, 1, 1, 1])
    model = _model([depthwise], [_in("x", [1, 4, 8, 8])], [_out()], {"w": (4, 1, 3, 3)})
    assert count_flops(model).total == 2 * 4 * 16 * 1 * 9  # 4x4 output, one input channel per output channel

    grouped = helper.make_node("Conv", ["x", "w"], ["y"], group=2)
    model = _model([grouped], [_in("x", [2, 4, 6, 6])], [_out()], {"w": (6, 2, 1, 1)})
    assert count_flops(model).total == 2 * (2 * 6 * 36 * 2)  # batch 2, 6 out channels, 2 in channels per group


def test_conv_transpose_counts_per_input_pixel():
    dense = helper.make_node("ConvTranspose", ["x", "w"], ["y"], strides=[2, 2])
    model = _model([dense], [_in("x", [1, 4, 5, 5])], [_out()], {"w": (4, 2, 3, 3)})
    assert count_flops(model).total == 2 * (4 * 25 * 2 * 9)  # each input value meets 2 out channels x 3x3

    grouped = helper.make_node("ConvTranspose", ["x", "w"], ["y"], strides=[2, 2], group=2)
    model = _model([grouped], [_in("x", [1, 4, 5, 5])], [_out()], {"w": (4, 1, 3, 3)})
    assert count_flops(model).total == 2 * (4 * 25 * 1 * 9)


def test_gemm_and_matmul_with_transposes_broadcasting_and_vectors():
    gemm = helper.make_node("Gemm", ["a", "b", "c"], ["y"], transB=1)
    model = _model([gemm], [_in("a", [3, 5])], [_out()], {"b": (7, 5), "c": (7,)})
    assert count_flops(model).total == 2 * 3 * 7 * 5

    gemm_t = helper.make_node("Gemm", ["a", "b"], ["y"], transA=1)
    model = _model([gemm_t], [_in("a", [5, 3])], [_out()], {"b": (5, 7)})
    assert count_flops(model).total == 2 * 3 * 7 * 5

    matmul = helper.make_node("MatMul", ["a", "b"], ["y"])
    model = _model([matmul], [_in("a", [2, 1, 3, 4])], [_out()], {"b": (5, 4, 6)})
    assert count_flops(model).total == 2 * (2 * 5) * 3 * 6 * 4  # batch dims broadcast to (2, 5)

    vector = helper.make_node("MatMul", ["a", "b"], ["y"])
    model = _model([vector], [_in("a", [4])], [_out()], {"b": (4, 6)})
    assert count_flops(model).total == 2 * 4 * 6


def test_uncounted_ops_add_nothing_and_by_op_splits_the_total():
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"]),
        helper.make_node("BatchNormalization", ["c", "s", "b", "m", "v"], ["n"]),
        helper.make_node("Relu", ["n"], ["r"]),
        helper.make_node("GlobalAveragePool", ["r"], ["p"]),
        helper.make_node("Flatten", ["p"], ["f"]),
        helper.make_node("Gemm", ["f", "fc"], ["y"], transB=1),
    ]
    weights = {"w": (8, 3, 1, 1), "s": (8,), "b": (8,), "m": (8,), "v": (8,), "fc": (10, 8)}
    count = count_flops(_model(nodes, [_in("x", [1, 3, 4, 4])], [_out()], weights))
    assert count.by_op == {"Conv": 2 * 8 * 16 * 3, "Gemm": 2 * 8 * 10}
    assert count.total == sum(count.by_op.values())
    assert [n[0] for n in count.nodes] == ["Conv", "Gemm"]


def test_dynamic_dims_are_fixed_by_batch_or_by_the_given_shape():
    conv = helper.make_node("Conv", ["x", "w"], ["y"])
    fixed_spatial = _model([conv], [_in("x", ["N", 3, 4, 4])], [_out()], {"w": (2, 3, 1, 1)})
    one = count_flops(fixed_spatial).total
    assert count_flops(fixed_spatial, batch=4).total == 4 * one
    assert count_flops(fixed_spatial, (3, 3, 4, 4)).input_shapes == {"x": (3, 3, 4, 4)}

    dynamic = _model([conv], [_in("x", ["N", 3, "H", "W"])], [_out()], {"w": (2, 3, 1, 1)})
    with pytest.raises(ValueError, match="dynamic"):
        count_flops(dynamic)
    assert count_flops(dynamic, {"x": (1, 3, 8, 4)}).total == 2 * 2 * 32 * 3
    with pytest.raises(ValueError, match="no graph input"):
        count_flops(dynamic, {"image": (1, 3, 8, 8)})


def test_shapes_recorded_by_the_exporter_do_not_contradict_a_new_shape():
    # As w600k_mbf: a dynamic batch but an output declared as [1, 512].
    gemm = helper.make_node("Gemm", ["x", "w"], ["y"], transB=1)
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 6])
    model = _model([gemm], [_in("x", ["N", 4])], [y], {"w": (6, 4)})
    assert count_flops(model, batch=8).total == 2 * 8 * 6 * 4


def test_resize_to_a_computed_size_is_followed_through():
    """SCRFD's FPN (opset 11): upsample the coarse map to the fine map's H, W, read as Shape -> Gather -> Unsqueeze
    -> Concat -> Cast. ONNX shape inference alone leaves that size unknown; the count must not."""
    const = {"zero": 0, "two": 2, "h_at": 2, "w_at": 3}
    nodes = [
        helper.make_node("Conv", ["x", "down"], ["coarse"], strides=[2, 2]),
        helper.make_node("Shape", ["x"], ["x_shape"]),
        helper.make_node("Gather", ["x_shape", "h_at"], ["h"]),
        helper.make_node("Gather", ["x_shape", "w_at"], ["w_"]),
        helper.make_node("Unsqueeze", ["h"], ["h1"], axes=[0]),
        helper.make_node("Unsqueeze", ["w_"], ["w1"], axes=[0]),
        helper.make_node("Concat", ["h1", "w1"], ["hw_i"], axis=0),
        helper.make_node("Cast", ["hw_i"], ["hw"], to=TensorProto.INT64),
        helper.make_node("Shape", ["coarse"], ["c_shape"]),
        helper.make_node("Slice", ["c_shape", "zero_1", "two_1", "zero_1"], ["nc"]),
        helper.make_node("Concat", ["nc", "hw"], ["sizes"], axis=0),
        helper.make_node("Constant", [], ["empty"], value=numpy_helper.from_array(np.zeros(0, np.float32))),
        helper.make_node("Resize", ["coarse", "empty", "empty", "sizes"], ["up"], mode="nearest"),
        helper.make_node("Add", ["up", "x"], ["sum"]),
        helper.make_node("Conv", ["sum", "w"], ["y"], pads=[1, 1, 1, 1]),
    ]
    model = _model(
        nodes, [_in("x", [1, 4, "H", "W"])], [_out()], {"down": (4, 4, 2, 2), "w": (8, 4, 3, 3)}, opset=OPSET_11
    )
    for name, value in const.items():
        model.graph.initializer.append(numpy_helper.from_array(np.array(value, np.int64), name))
        model.graph.initializer.append(numpy_helper.from_array(np.array([value], np.int64), f"{name}_1"))
    count = count_flops(model, (1, 4, 16, 12))
    assert count.by_op["Conv"] == 2 * (4 * (8 * 6) * 4 * 4) + 2 * (8 * (16 * 12) * 4 * 9)


def test_real_embedder_and_detector():
    """Sanity on the shipped models: w600k_mbf (MobileFaceNet) is known as ~0.45 GMACs at 112x112; SCRFD-500M is
    named for ~0.5 GMACs at 640x480 (SCRFD counts MACs), and is fully convolutional."""
    wheel = registry.vectron_model_dir()
    embedder = count_flops(wheel / "w600k_mbf.onnx")
    print(f"\nw600k_mbf 112x112: {embedder.gflops:.4f} GFLOPs {embedder.by_op}")
    assert 0.85e9 < embedder.total < 0.92e9
    assert count_flops(wheel / "w600k_mbf.onnx", batch=32).total == 32 * embedder.total

    detector = wheel / "scrfd_500m_bnkps.onnx"
    vga = count_flops(detector, (1, 3, 480, 640))
    small, large = count_flops(detector, (1, 3, 320, 320)), count_flops(detector, (1, 3, 640, 640))
    print(f"SCRFD-500M 640x480 {vga.gflops:.4f}, 320x320 {small.gflops:.4f}, 640x640 {large.gflops:.4f} GFLOPs")
    assert 0.9e9 < vga.total < 1.2e9
    assert large.total == pytest.approx(4 * small.total, rel=0.01)
