"""TensorFlow Serving's protobuf and gRPC modules, loaded without importing TensorFlow.

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
