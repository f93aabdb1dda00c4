"""TensorFlow Serving's names and documents, the one place both its REST and gRPC adapters read.

Dtype names (``DT_FLOAT`` ...) and their enum values, version state names, the ``serving_default``
signature and the version status, as the JSON TF Serving's REST API answers. The gRPC adapter parses
the same JSON into its protobuf messages, so the two transports cannot describe a model differently.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from service.dataplane import DataPlane, State, VersionView
from service.errors import InvalidInput
from service.schema import TensorSpec

SIGNATURE = "serving_default"
METHOD_NAME = "tensorflow/serving/predict"

DTYPES: dict[str, tuple[int, np.dtype[Any]]] = {
    name: (number, np.dtype(numpy))
    for name, number, numpy in (
        ("DT_FLOAT", 1, np.float32), ("DT_DOUBLE", 2, np.float64), ("DT_INT32", 3, np.int32),
        ("DT_UINT8", 4, np.uint8), ("DT_INT16", 5, np.int16), ("DT_INT8", 6, np.int8),
        ("DT_INT64", 9, np.int64), ("DT_BOOL", 10, np.bool_), ("DT_UINT16", 17, np.uint16),
        ("DT_HALF", 19, np.float16), ("DT_UINT32", 22, np.uint32), ("DT_UINT64", 23, np.uint64),
    )
}  # fmt: skip
"""TensorFlow's ``DataType`` names (tensorflow/core/framework/types.proto): enum value and NumPy dtype."""
DTYPE_BY_NUMBER = {number: (name, dtype) for name, (number, dtype) in DTYPES.items()}
DTYPE_NAME_OF = {dtype.str: name for name, (_, dtype) in DTYPES.items()}

STATES = {
    State.LOADING: "LOADING",
    State.READY: "AVAILABLE",
    State.FAILED: "END",
    State.UNLOADING: "UNLOADING",
    State.UNLOADED: "END",
}
"""Our version states as ``ModelVersionStatus.State`` names (tensorflow_serving/apis/get_model_status.proto)."""


def check_signature(name: str | None) -> None:
    """400 unless ``name`` is the one signature every model has (empty or absent = the default)."""
    if name not in (None, "", SIGNATURE):
        raise InvalidInput(f"signature {name!r} not found; this model has {SIGNATURE!r}")


def dtype_name(dtype: np.dtype[Any] | str) -> str:
    """TensorFlow's name of a NumPy dtype (``float32`` -> ``DT_FLOAT``)."""
    return DTYPE_NAME_OF[np.dtype(dtype).newbyteorder("=").str]


def _tensor_infos(specs: list[TensorSpec]) -> dict[str, Any]:
    return {
        s.name: {
            "dtype": dtype_name(s.dtype),
            "tensor_shape": {"dim": [{"size": str(d), "name": ""} for d in s.shape], "unknown_rank": False},
            "name": s.name,
        }
        for s in specs
    }


def signature_def_map(view: VersionView) -> dict[str, Any]:
    """The ``SignatureDefMap`` of a version: ``{"signature_def": {"serving_default": ...}}``."""
    meta = view.metadata
    signature = {
        "inputs": _tensor_infos(meta.inputs) if meta else {},
        "outputs": _tensor_infos(meta.outputs) if meta else {},
        "method_name": METHOD_NAME,
    }
    return {"signature_def": {SIGNATURE: signature}}


def version_status(view: VersionView) -> dict[str, Any]:
    """One ``ModelVersionStatus``: version, state name, and an error status for failed versions."""
    failed = view.state is State.FAILED
    return {
        "version": str(view.version),
        "state": STATES[view.state],
        "status": {"error_code": "UNKNOWN" if failed else "OK", "error_message": view.error or ""},
    }


def model_status(dataplane: DataPlane, name: str, version: int | None, label: str | None) -> dict[str, Any]:
    """``GetModelStatusResponse``: the addressed version (by version or label), or every known one."""
    if version is None and label is None:
        views = dataplane.versions(name)
    else:
        views = [dataplane.find(name, version, label)]
    return {"model_version_status": [version_status(v) for v in views]}
