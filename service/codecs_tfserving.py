"""TensorFlow Serving protobufs: loading them without TensorFlow, and TensorProto <-> NumPy.

``tensorflow-serving-api``'s modules import ``tensorflow.core...`` protobuf modules, and importing
those the normal way runs ``tensorflow/__init__`` (6-7 s, ~800 MB). :func:`tfserving_protos` puts a
bare package object in front of it while the protobuf modules load, then removes it, so a later real
``import tensorflow`` (the TensorFlow runtime) still works and reuses the same protobuf classes.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from functools import lru_cache
from typing import Any

import numpy as np

from service.errors import InvalidInput

_MODULES = (
    "tensorflow_serving.apis.predict_pb2",
    "tensorflow_serving.apis.get_model_metadata_pb2",
    "tensorflow_serving.apis.get_model_status_pb2",
    "tensorflow_serving.apis.prediction_service_pb2_grpc",
    "tensorflow_serving.apis.model_service_pb2_grpc",
    "tensorflow.core.framework.tensor_pb2",
    "tensorflow.core.framework.types_pb2",
    "tensorflow.core.protobuf.meta_graph_pb2",
)


@lru_cache(maxsize=1)
def tfserving_protos() -> types.SimpleNamespace:
    """The TF Serving protobuf and gRPC modules, by short name (``predict_pb2``, ...)."""
    stubbed = False
    if "tensorflow" not in sys.modules:
        spec = importlib.util.find_spec("tensorflow")
        if spec is None or spec.submodule_search_locations is None:
            raise ImportError("TF Serving gRPC needs the 'tensorflow-serving-api' package (pip install it)")
        bare = types.ModuleType("tensorflow")
        bare.__path__ = list(spec.submodule_search_locations)
        sys.modules["tensorflow"] = bare
        stubbed = True
    try:
        modules = {name.rsplit(".", 1)[1]: importlib.import_module(name) for name in _MODULES}
    finally:
        if stubbed:
            del sys.modules["tensorflow"]
    return types.SimpleNamespace(**modules)


# DataType enum values (tensorflow/core/framework/types.proto) and their NumPy dtypes.
_TF_TO_NUMPY = {
    1: np.float32, 2: np.float64, 3: np.int32, 4: np.uint8, 5: np.int16, 6: np.int8, 9: np.int64,
    10: np.bool_, 17: np.uint16, 19: np.float16, 22: np.uint32, 23: np.uint64,
}  # fmt: skip
_NUMPY_TO_TF = {np.dtype(v).str: k for k, v in _TF_TO_NUMPY.items()}
_VALUE_FIELDS = {
    1: "float_val", 2: "double_val", 3: "int_val", 4: "int_val", 5: "int_val", 6: "int_val", 9: "int64_val",
    10: "bool_val", 17: "int_val", 22: "uint32_val", 23: "uint64_val",
}  # fmt: skip
TF_DTYPE_NAMES = {"float32": 1, "float64": 2, "int32": 3, "int64": 9}


def tensor_to_array(name: str, proto: Any) -> np.ndarray:
    """A TensorProto as an array (``tensor_content`` bytes or the typed ``*_val`` fields)."""
    dtype = _TF_TO_NUMPY.get(proto.dtype)
    if dtype is None:
        raise InvalidInput(
            f"input {name!r}: TensorProto dtype {proto.dtype} is not a numeric type this server takes"
        )
    shape = [d.size for d in proto.tensor_shape.dim]
    count = int(np.prod(shape)) if shape else 1
    if proto.tensor_content:
        array = np.frombuffer(proto.tensor_content, dtype=np.dtype(dtype).newbyteorder("<"))
    elif proto.dtype == 19:
        array = np.asarray(proto.half_val, dtype=np.uint16).view(np.float16)
    else:
        array = np.asarray(getattr(proto, _VALUE_FIELDS[proto.dtype]), dtype=dtype)
        if array.size == 1 and count > 1:
            array = np.full(count, array[0], dtype=dtype)  # TF fills a shape from one value
    if array.size != count:
        raise InvalidInput(f"input {name!r}: shape {shape} needs {count} values, got {array.size}")
    return array.reshape(shape)


def array_to_tensor(array: np.ndarray, proto: Any) -> None:
    """Fill ``proto`` (a TensorProto) from ``array`` as ``tensor_content``."""
    proto.dtype = _NUMPY_TO_TF[array.dtype.str]
    for d in array.shape:
        proto.tensor_shape.dim.add().size = d
    proto.tensor_content = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()
