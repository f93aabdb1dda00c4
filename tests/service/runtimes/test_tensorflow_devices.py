"""The TensorFlow runtime enables memory growth on every visible GPU before loading; here (no GPU) that
really runs as a no-op and the SavedModel is served on the CPU, with the same answers as ONNX Runtime."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow as tf

from service.runtimes.onnx import OnnxRuntime
from service.runtimes.tensorflow import TensorflowRuntime, enable_memory_growth
from service.schema import ModelMetadata


def test_memory_growth_without_a_gpu_configures_nothing() -> None:
    assert tf.config.list_physical_devices("GPU") == []
    assert enable_memory_growth(tf) == []
    assert enable_memory_growth(tf) == []  # again, after TensorFlow has initialised its devices


def test_the_saved_model_loads_on_the_cpu_and_agrees_with_onnx(trained_repo: Path) -> None:
    directory = trained_repo / "mlp" / "1"
    metadata = ModelMetadata.model_validate_json((directory / "metadata.json").read_bytes())
    runtime = TensorflowRuntime(directory, metadata)
    assert runtime.provider == "none"
    runtime.load()
    assert runtime.provider == "CPU"
    assert not runtime.inline_ok  # a Python framework: always on the runtime thread
    (spec,) = metadata.inputs
    x = {spec.name: np.asarray(metadata.example[spec.name], np.float32)}
    reference = OnnxRuntime(directory, metadata, ["CPUExecutionProvider"], threads=1)
    reference.load()
    name = metadata.outputs[0].name
    np.testing.assert_allclose(runtime.predict(x)[name], reference.predict(x)[name], atol=1e-5)
