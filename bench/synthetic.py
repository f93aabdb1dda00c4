"""A synthetic CNN with the tutorial's shape (random weights), written into a model repository.

Conv2D 32 3×3 relu → MaxPool 2 → Flatten → Dense 128 relu → Dense 10 softmax on float32
``[N, 28, 28, 1]``, input ``pixels``, output ``probabilities``. Used by the benchmark's tests so that
they need no trained model; the real benchmark uses ``models/cnn/<latest>``.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from service.schema import ModelMetadata


def cnn_onnx(seed: int = 0) -> bytes:
    """The serialized ONNX graph of the synthetic CNN."""
    rng = np.random.default_rng(seed)

    def init(name: str, array: np.ndarray) -> TensorProto:
        return numpy_helper.from_array(array.astype(np.float32), name)

    weights = [
        init("W1", rng.standard_normal((32, 1, 3, 3)) * 0.1), init("B1", np.zeros(32)),
        init("W2", rng.standard_normal((5408, 128)) * 0.01), init("B2", np.zeros(128)),
        init("W3", rng.standard_normal((128, 10)) * 0.1), init("B3", np.zeros(10)),
    ]  # fmt: skip
    nodes = [
        helper.make_node("Transpose", ["pixels"], ["t"], perm=[0, 3, 1, 2]),
        helper.make_node("Conv", ["t", "W1", "B1"], ["c"]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Flatten", ["p"], ["f"]),
        helper.make_node("Gemm", ["f", "W2", "B2"], ["g"]),
        helper.make_node("Relu", ["g"], ["g2"]),
        helper.make_node("Gemm", ["g2", "W3", "B3"], ["l"]),
        helper.make_node("Softmax", ["l"], ["probabilities"], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "cnn",
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, [None, 28, 28, 1])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, 10])],
        weights,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model.SerializeToString()


def synthetic_metadata(
    name: str,
    version: int,
    *,
    inputs: list[dict[str, Any]],
    outputs: list[dict[str, Any]],
    example: dict[str, Any],
    labels: list[str] | None = None,
    metrics: dict[str, float] | None = None,
    input_contract: str = "synthetic model",
    artifacts: dict[str, str] | None = None,
    parity: tuple[float, float] = (0.0, 0.0),
) -> ModelMetadata:
    """A valid ``metadata.json`` for a synthetic (untrained) model; ``parity`` gives the recorded
    ONNX-vs-SavedModel and ONNX-vs-Keras differences."""
    return ModelMetadata(
        name=name,
        version=version,
        created="2026-01-01T00:00:00Z",
        inputs=inputs,
        outputs=outputs,
        labels=labels,
        input_contract=input_contract,
        example=example,
        metrics=metrics or {},
        dataset={"name": "synthetic"},
        training_seconds=0.0,
        framework_versions={"onnx": onnx.__version__},
        artifacts=artifacts or {},
        parity={
            "samples": 256,
            "tolerance": 1e-5,
            "onnx_vs_saved_model": parity[0],
            "onnx_vs_keras": parity[1],
            "passed": True,
        },
    )


def write_onnx_version(
    repo: Path,
    name: str,
    version: int,
    onnx_bytes: bytes,
    *,
    inputs: list[dict[str, Any]],
    outputs: list[dict[str, Any]],
    example: dict[str, Any],
    labels: list[str] | None = None,
    metrics: dict[str, float] | None = None,
    input_contract: str = "synthetic model",
) -> Path:
    """Write ``repo/name/version/{model.onnx, metadata.json}`` atomically (staging folder + rename,
    as the exporter does) and return the version folder."""
    staging = repo / f".staging-{uuid.uuid4().hex}"
    staging.mkdir(parents=True)
    (staging / "model.onnx").write_bytes(onnx_bytes)
    metadata = synthetic_metadata(
        name,
        version,
        inputs=inputs,
        outputs=outputs,
        example=example,
        labels=labels,
        metrics=metrics,
        input_contract=input_contract,
        artifacts={"model.onnx": hashlib.sha256(onnx_bytes).hexdigest()},
    )
    (staging / "metadata.json").write_text(metadata.model_dump_json(indent=1))
    target = repo / name / str(version)
    target.parent.mkdir(parents=True, exist_ok=True)
    os.rename(staging, target)
    return target


def write_synthetic_cnn(repo: Path, name: str = "cnn", version: int = 1) -> Path:
    """Write the synthetic CNN as ``repo/name/version`` and return that folder."""
    return write_onnx_version(
        repo,
        name,
        version,
        cnn_onnx(),
        inputs=[{"name": "pixels", "dtype": "float32", "shape": [-1, 28, 28, 1]}],
        outputs=[{"name": "probabilities", "dtype": "float32", "shape": [-1, 10]}],
        labels=[str(i) for i in range(10)],
        example={"pixels": np.zeros((1, 28, 28, 1)).tolist()},
        input_contract="raw pixels 0-255",
    )
