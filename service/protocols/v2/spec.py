"""KServe V2 names and documents, the one place its REST and gRPC adapters read.

Datatype names and their NumPy dtypes, the typed ``contents`` field per datatype (gRPC), the server's
name and extensions, and the model metadata document.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from service import __version__
from service.dataplane import DataPlane, State
from service.schema import TensorSpec

SERVER_NAME = "keras-serving"
EXTENSIONS = [
    "binary_tensor_data",
    "model_repository_metadata",
    "model_configuration",
    "model_repository",
    "statistics",
    "classification",
    "logging",
]

DATATYPES: dict[str, np.dtype[Any]] = {
    name: np.dtype(dt).newbyteorder("<")
    for name, dt in {
        "BOOL": np.bool_, "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32, "UINT64": np.uint64,
        "INT8": np.int8, "INT16": np.int16, "INT32": np.int32, "INT64": np.int64,
        "FP16": np.float16, "FP32": np.float32, "FP64": np.float64,
    }.items()
}  # fmt: skip
"""V2 datatype name -> little-endian NumPy dtype (BYTES is not a numeric type and is not taken)."""
_DATATYPE_OF = {dt.newbyteorder("=").str: name for name, dt in DATATYPES.items()}

CONTENTS_FIELDS = {
    "BOOL": "bool_contents", "INT8": "int_contents", "INT16": "int_contents", "INT32": "int_contents",
    "INT64": "int64_contents", "UINT8": "uint_contents", "UINT16": "uint_contents", "UINT32": "uint_contents",
    "UINT64": "uint64_contents", "FP32": "fp32_contents", "FP64": "fp64_contents",
}  # fmt: skip
"""gRPC ``InferTensorContents`` field per datatype (FP16 has none: it travels as raw contents)."""


def datatype(dtype: np.dtype[Any] | str) -> str:
    """V2 datatype name of a NumPy dtype (``float32`` -> ``FP32``)."""
    return _DATATYPE_OF[np.dtype(dtype).newbyteorder("=").str]


def server_metadata() -> dict[str, Any]:
    return {"name": SERVER_NAME, "version": __version__, "extensions": EXTENSIONS}


def _tensors(specs: list[TensorSpec]) -> list[dict[str, Any]]:
    return [{"name": s.name, "datatype": datatype(s.dtype), "shape": s.shape} for s in specs]


def model_metadata(dataplane: DataPlane, name: str, version: int | None) -> dict[str, Any]:
    """The V2 model metadata document of ``name`` (default version unless ``version`` is given)."""
    view = dataplane.find(name, version)
    versions = [v.version for v in dataplane.versions(name) if v.state is not State.UNLOADED]
    meta = view.metadata
    return {
        "name": view.name,
        "versions": [str(v) for v in versions],
        "platform": view.platform,
        "inputs": _tensors(meta.inputs) if meta else [],
        "outputs": _tensors(meta.outputs) if meta else [],
        "parameters": {
            "runtime": view.runtime,
            "execution_provider": view.provider or "none",
            "state": str(view.state),
        },
    }
