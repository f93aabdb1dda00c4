"""The exact ONNX rewrites: applied where their conditions hold, left alone elsewhere, same outputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from tests.training.conftest import read_metadata
from training.onnx_graph import simplify

RNG = np.random.default_rng(7)


def _const(name: str, value: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(value), name)


def _tf2onnx_like_cnn(path: Path, *, offset: float = 0.0, scaled_twice: bool = False) -> None:
    """The shape of graph tf2onnx writes for Rescaling -> Conv -> Flatten -> Dense (NHWC input, C=1)."""
    nodes = [
        helper.make_node("Mul", ["x", "scale"], ["scaled"]),
        helper.make_node("Add", ["scaled", "offset"], ["shifted"]),
        helper.make_node("Reshape", ["shifted", "nchw"], ["image"]),
        helper.make_node("Conv", ["image", "w", "b"], ["conv"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["conv"], ["relu"]),
        helper.make_node("Transpose", ["relu"], ["nhwc"], perm=[0, 2, 3, 1]),
        helper.make_node("Shape", ["relu"], ["shape"]),
        helper.make_node("Gather", ["shape", "perm"], ["nhwc_shape"]),
        helper.make_node("Slice", ["nhwc_shape", "zero", "one", "zero"], ["batch"]),
        helper.make_node("Concat", ["batch", "rest"], ["flat_shape"], axis=0),
        helper.make_node("Reshape", ["nhwc", "flat_shape"], ["flat"]),
        helper.make_node("MatMul", ["flat", "dense"], ["y"]),
    ]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 5])]
    if scaled_twice:  # the scaled input is also a graph output: the Mul must stay
        outputs.append(helper.make_tensor_value_info("scaled", TensorProto.FLOAT, [None, 6, 6, 1]))
    graph = helper.make_graph(
        nodes,
        "cnn",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 6, 6, 1])],
        outputs,
        [
            _const("scale", np.float32(1 / 255)),
            _const("offset", np.float32(offset)),
            _const("nchw", np.array([-1, 1, 6, 6], np.int64)),
            _const("w", RNG.normal(size=(4, 1, 3, 3)).astype(np.float32)),
            _const("b", RNG.normal(size=4).astype(np.float32)),
            _const("perm", np.array([0, 2, 3, 1], np.int64)),
            _const("zero", np.array([0], np.int64)),
            _const("one", np.array([1], np.int64)),
            _const("rest", np.array([144], np.int64)),
            _const("dense", RNG.normal(size=(144, 5)).astype(np.float32)),
        ],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


def _run(path: Path, x: np.ndarray) -> list[np.ndarray]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})  # type: ignore[no-any-return]


def _ops(path: Path) -> list[str]:
    return [n.op_type for n in onnx.load(str(path)).graph.node]


@pytest.fixture
def pixels() -> np.ndarray:
    return RNG.integers(0, 256, size=(9, 6, 6, 1)).astype(np.float32)


def test_all_rewrites_apply_and_outputs_stay_the_same(tmp_path: Path, pixels: np.ndarray) -> None:
    path = tmp_path / "m.onnx"
    _tf2onnx_like_cnn(path)
    before = _run(path, pixels)[0]
    applied = simplify(path)
    assert applied == {
        "zero_adds_dropped": 1,
        "scales_folded_into_conv": 1,
        "reshapes_made_static": 1,
        "nodes_pruned": 4,  # Shape, Gather, Slice, Concat
    }
    assert _ops(path) == ["Reshape", "Conv", "Relu", "Transpose", "Reshape", "MatMul"]
    np.testing.assert_allclose(_run(path, pixels)[0], before, rtol=1e-5, atol=1e-4)
    # a batch size the graph never saw still works: the static shape keeps the batch free
    assert _run(path, pixels[:1])[0].shape == (1, 5)


def test_a_nonzero_offset_keeps_the_scale_where_it_is(tmp_path: Path, pixels: np.ndarray) -> None:
    path = tmp_path / "m.onnx"
    _tf2onnx_like_cnn(path, offset=-0.5)
    before = _run(path, pixels)[0]
    applied = simplify(path)
    assert applied["zero_adds_dropped"] == 0 and applied["scales_folded_into_conv"] == 0
    assert _ops(path)[:3] == ["Mul", "Add", "Reshape"]
    np.testing.assert_allclose(_run(path, pixels)[0], before, rtol=1e-6)


def test_a_scaled_tensor_that_is_also_an_output_is_not_folded(tmp_path: Path, pixels: np.ndarray) -> None:
    path = tmp_path / "m.onnx"
    _tf2onnx_like_cnn(path, scaled_twice=True)
    before = _run(path, pixels)
    assert simplify(path)["scales_folded_into_conv"] == 0
    after = _run(path, pixels)
    np.testing.assert_allclose(after[1], before[1], rtol=0)
    np.testing.assert_allclose(after[0], before[0], rtol=1e-6)


def test_a_graph_with_nothing_to_rewrite_is_left_byte_identical(tmp_path: Path) -> None:
    path = tmp_path / "m.onnx"
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "relu",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 3])],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    original = path.read_bytes()
    assert not any(simplify(path).values())
    assert path.read_bytes() == original


def test_the_exported_cnn_has_no_scaling_node_and_records_its_rewrites(quick_repo: Path) -> None:
    meta = read_metadata(quick_repo / "cnn" / "1")
    assert meta["onnx_rewrites"]["scales_folded_into_conv"] == 1
    assert meta["onnx_rewrites"]["reshapes_made_static"] == 1
    ops = [n.op_type for n in onnx.load(str(quick_repo / "cnn" / "1" / "model.onnx")).graph.node]
    assert "Mul" not in ops and "Shape" not in ops
    assert meta["parity"]["passed"] and meta["parity"]["onnx_vs_saved_model"] <= 1e-5
