"""TF Serving documents parse into TF Serving's real protobuf messages (no TensorFlow import)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from google.protobuf.json_format import ParseDict

from bench.synthetic import synthetic_metadata
from service.dataplane import DataPlane, State, VersionView
from service.errors import InvalidInput, NotFound
from service.models.registry import ModelRegistry
from service.protocols.tfserving.protos import tfserving_protos
from service.protocols.tfserving.spec import (
    DTYPES,
    METHOD_NAME,
    SIGNATURE,
    STATES,
    check_signature,
    dtype_name,
    model_status,
    signature_def_map,
    version_status,
)
from service.schema import ModelMetadata
from service.settings import Settings
from tests.service.modelfactory import write_demo_repo

PROTOS = tfserving_protos()
VersionState = PROTOS.get_model_status_pb2.ModelVersionStatus.State


def metadata() -> ModelMetadata:
    return synthetic_metadata(
        "m",
        1,
        inputs=[
            {"name": "pixels", "dtype": "float32", "shape": [-1, 28, 28, 1]},
            {"name": "ids", "dtype": "int64", "shape": [-1]},
        ],
        outputs=[
            {"name": "probabilities", "dtype": "float64", "shape": [-1, 10]},
            {"name": "count", "dtype": "int32", "shape": [-1, 1]},
        ],
        example={"pixels": np.zeros((1, 28, 28, 1)).tolist(), "ids": [1]},
        input_contract="pixels and ids",
    )


def view(
    state: State = State.READY, error: str | None = None, meta: ModelMetadata | None = None
) -> VersionView:
    return VersionView("m", 3, state, error, "onnx", None, "onnxruntime_onnx", None, meta)


def test_dtype_numbers_are_tensorflows_enum_values() -> None:
    data_type = PROTOS.types_pb2.DataType
    for name, (number, dtype) in DTYPES.items():
        assert data_type.Value(name) == number, name
        assert dtype_name(dtype) == name


def test_states_cover_every_state_with_real_enum_names() -> None:
    assert set(STATES) == set(State)
    for name in STATES.values():
        VersionState.Value(name)  # raises ValueError for a name the proto does not have
    assert STATES[State.READY] == "AVAILABLE" and STATES[State.LOADING] == "LOADING"


@pytest.mark.parametrize("name", [None, "", SIGNATURE])
def test_check_signature_accepts_the_default(name: str | None) -> None:
    check_signature(name)  # no exception


@pytest.mark.parametrize("name", ["predict", "Serving_Default", " serving_default"])
def test_check_signature_rejects_others(name: str) -> None:
    with pytest.raises(InvalidInput, match=f"signature {name!r} not found"):
        check_signature(name)


def test_signature_def_map_parses_into_the_real_message() -> None:
    message = ParseDict(
        signature_def_map(view(meta=metadata())), PROTOS.get_model_metadata_pb2.SignatureDefMap()
    )
    signature = message.signature_def[SIGNATURE]
    assert signature.method_name == METHOD_NAME
    assert set(signature.inputs) == {"pixels", "ids"} and set(signature.outputs) == {"probabilities", "count"}
    pixels = signature.inputs["pixels"]
    assert pixels.name == "pixels" and pixels.dtype == 1  # DT_FLOAT
    assert [d.size for d in pixels.tensor_shape.dim] == [-1, 28, 28, 1]
    assert not pixels.tensor_shape.unknown_rank
    assert signature.inputs["ids"].dtype == 9  # DT_INT64
    assert [d.size for d in signature.inputs["ids"].tensor_shape.dim] == [-1]
    assert signature.outputs["probabilities"].dtype == 2  # DT_DOUBLE
    assert signature.outputs["count"].dtype == 3  # DT_INT32
    assert [d.size for d in signature.outputs["count"].tensor_shape.dim] == [-1, 1]


def test_signature_def_map_without_metadata_is_empty_but_valid() -> None:
    message = ParseDict(
        signature_def_map(view(State.FAILED)), PROTOS.get_model_metadata_pb2.SignatureDefMap()
    )
    signature = message.signature_def[SIGNATURE]
    assert signature.method_name == METHOD_NAME and not signature.inputs and not signature.outputs


def parse_status(doc: dict[str, Any]) -> Any:
    return ParseDict(doc, PROTOS.get_model_status_pb2.GetModelStatusResponse())


@pytest.mark.parametrize("state", list(State))
def test_version_status_parses_for_every_state(state: State) -> None:
    error = "artifact corrupt: model.onnx" if state is State.FAILED else None
    (status,) = parse_status(
        {"model_version_status": [version_status(view(state, error))]}
    ).model_version_status
    assert status.version == 3
    assert status.state == VersionState.Value(STATES[state])
    if state is State.FAILED:
        assert status.status.error_code == 2  # UNKNOWN
        assert status.status.error_message == "artifact corrupt: model.onnx"
    else:
        assert status.status.error_code == 0 and status.status.error_message == ""


def test_ready_and_failed_status_values() -> None:
    ready = parse_status({"model_version_status": [version_status(view())]}).model_version_status[0]
    assert ready.state == 30  # AVAILABLE
    failed = parse_status({"model_version_status": [version_status(view(State.FAILED, "boom"))]})
    assert failed.model_version_status[0].state == 50  # END
    assert (
        failed.model_version_status[0].status.error_code,
        failed.model_version_status[0].status.error_message,
    ) == (
        2,
        "boom",
    )


def test_model_status_over_a_real_data_plane(tmp_path: Path) -> None:
    write_demo_repo(tmp_path)

    async def main() -> dict[str, Any]:
        dp = DataPlane(ModelRegistry(Settings(repository=tmp_path, poll_interval_s=0)))
        await dp.registry.start()
        try:
            docs = {
                "all": model_status(dp, "m", None, None),
                "v1": model_status(dp, "m", 1, None),
                "canary": model_status(dp, "m", None, "canary"),
                "broken": model_status(dp, "broken", None, None),
            }
            with pytest.raises(NotFound, match="version 7 of model 'm' not found"):
                model_status(dp, "m", 7, None)
            with pytest.raises(NotFound, match="model 'nope' not found"):
                model_status(dp, "nope", None, None)
            with pytest.raises(NotFound, match="label 'beta'"):
                model_status(dp, "m", None, "beta")
            return docs
        finally:
            await dp.registry.close()

    docs = {k: parse_status(v).model_version_status for k, v in asyncio.run(main()).items()}
    assert [(s.version, s.state) for s in docs["all"]] == [(1, 30), (2, 30)]
    assert [s.version for s in docs["v1"]] == [1]
    assert [s.version for s in docs["canary"]] == [2]
    (broken,) = docs["broken"]
    assert broken.state == 50 and broken.status.error_code == 2 and broken.status.error_message
