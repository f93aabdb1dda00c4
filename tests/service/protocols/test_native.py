"""The native protocol's request decoding and model documents, in-process."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bench.synthetic import synthetic_metadata
from service.dataplane import DataPlane, State, VersionView
from service.errors import InvalidInput
from service.models.registry import ModelRegistry
from service.protocols.native import PROTOCOL, describe_model, describe_version, parse_predict
from service.schema import ModelMetadata
from service.settings import Settings
from tests.service.modelfactory import write_demo_repo


def metadata(name: str = "m", version: int = 1, labels: list[str] | None = None) -> ModelMetadata:
    """A valid ModelMetadata with non-default metrics and parity figures, so the documents show them."""
    return synthetic_metadata(
        name,
        version,
        inputs=[{"name": "x", "dtype": "float32", "shape": [-1, 4]}],
        outputs=[{"name": "y", "dtype": "float32", "shape": [-1, 4]}],
        example={"x": [[1.0, 1.0, 1.0, 1.0]]},
        labels=labels,
        metrics={"accuracy": 0.75},
        input_contract="four floats",
        parity=(2e-7, 3e-7),
    )


def view(state: State = State.READY, **kw: Any) -> VersionView:
    fields: dict[str, Any] = {
        "name": "m",
        "version": 1,
        "state": state,
        "error": None,
        "runtime": "onnx",
        "provider": "CPUExecutionProvider",
        "platform": "onnxruntime_onnx",
        "load_seconds": 0.25,
        "metadata": metadata(labels=["a", "b", "c", "d"]),
    }
    return VersionView(**{**fields, **kw})


# ----- parse_predict ---------------------------------------------------------------------------------
def test_unnamed_inputs_are_the_single_none_key() -> None:
    req = parse_predict({"model": "m", "inputs": [[1, 2], [3, 4]]})
    assert (req.model, req.protocol, req.version, req.label, req.outputs) == ("m", PROTOCOL, None, None, None)
    assert list(req.inputs) == [None]
    np.testing.assert_array_equal(req.inputs[None], [[1, 2], [3, 4]])
    assert req.inputs[None].dtype == np.int64


def test_named_inputs_keep_their_names_and_dtypes() -> None:
    req = parse_predict(
        {"model": "m", "version": 3, "inputs": {"a": [[1.5]], "b": [[1, 2, 3]]}, "outputs": ["y", "z"]}
    )
    assert set(req.inputs) == {"a", "b"}
    assert req.inputs["a"].dtype == np.float64 and req.inputs["a"].shape == (1, 1)
    assert req.inputs["b"].shape == (1, 3)
    assert (req.version, req.label, req.outputs) == (3, None, ["y", "z"])


def test_label_is_passed_through() -> None:
    req = parse_predict({"model": "m", "label": "stable", "inputs": [[0.0]]})
    assert (req.version, req.label) == (None, "stable")


def test_null_version_and_label_mean_default() -> None:
    req = parse_predict({"model": "m", "version": None, "label": None, "inputs": [[0.0]], "outputs": None})
    assert (req.version, req.label, req.outputs) == (None, None, None)


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        ([1, 2], "expected a JSON object, got list"),
        ("m", "expected a JSON object, got str"),
        (None, "expected a JSON object, got NoneType"),
        ({"inputs": [[1]]}, "field 'model' \\(string\\) is required"),
        ({"model": "", "inputs": [[1]]}, "field 'model' \\(string\\) is required"),
        ({"model": 5, "inputs": [[1]]}, "field 'model' \\(string\\) is required"),
        ({"model": "m", "version": True, "inputs": [[1]]}, "'version' must be a positive integer, got True"),
        (
            {"model": "m", "version": False, "inputs": [[1]]},
            "'version' must be a positive integer, got False",
        ),
        ({"model": "m", "version": 0, "inputs": [[1]]}, "'version' must be a positive integer, got 0"),
        ({"model": "m", "version": -2, "inputs": [[1]]}, "'version' must be a positive integer, got -2"),
        ({"model": "m", "version": 1.0, "inputs": [[1]]}, "'version' must be a positive integer, got 1.0"),
        ({"model": "m", "version": "1", "inputs": [[1]]}, "'version' must be a positive integer, got '1'"),
        ({"model": "m", "label": 1, "inputs": [[1]]}, "'label' must be a string, got 1"),
        (
            {"model": "m", "version": 1, "label": "stable", "inputs": [[1]]},
            "either 'version' or 'label', not both",
        ),
        ({"model": "m"}, "field 'inputs' is required"),
        ({"model": "m", "inputs": {}}, "field 'inputs' is an empty object"),
        ({"model": "m", "inputs": None}, "input 'inputs': expected numbers"),
        ({"model": "m", "inputs": [["a"]]}, "input 'inputs': expected numbers, got strings"),
        ({"model": "m", "inputs": {"px": [[1], [1, 2]]}}, "input 'px': rows have different lengths"),
        ({"model": "m", "inputs": {"px": [[True]]}}, "input 'px': expected numbers, got booleans"),
        ({"model": "m", "inputs": [[1]], "outputs": "y"}, "'outputs' must be a list of output names"),
        ({"model": "m", "inputs": [[1]], "outputs": ["y", 2]}, "'outputs' must be a list of output names"),
        ({"model": "m", "inputs": [[1]], "outputs": {"y": 1}}, "'outputs' must be a list of output names"),
        ({"model": "m", "inputs": [[1]], "outputs": [None]}, "'outputs' must be a list of output names"),
    ],
)
def test_malformed_predict_bodies_are_invalid_input(payload: Any, fragment: str) -> None:
    with pytest.raises(InvalidInput, match=fragment):
        parse_predict(payload)


# ----- describe_version / describe_model --------------------------------------------------------------
def test_describe_version_of_a_ready_version() -> None:
    doc = describe_version(view())
    assert doc == {
        "version": 1,
        "state": "ready",
        "error": None,
        "runtime": "onnx",
        "provider": "CPUExecutionProvider",
        "load_seconds": 0.25,
        "inputs": [{"name": "x", "dtype": "float32", "shape": [-1, 4]}],
        "outputs": [{"name": "y", "dtype": "float32", "shape": [-1, 4]}],
        "class_labels": ["a", "b", "c", "d"],
        "input_contract": "four floats",
        "example": {"x": [[1.0, 1.0, 1.0, 1.0]]},
        "metrics": {"accuracy": 0.75},
        "parity": {
            "samples": 256,
            "tolerance": 1e-5,
            "onnx_vs_saved_model": 2e-7,
            "onnx_vs_keras": 3e-7,
            "passed": True,
        },
    }


@pytest.mark.parametrize("state", list(State))
def test_describe_version_without_metadata_has_no_signature(state: State) -> None:
    doc = describe_version(view(state, error="boom", provider=None, load_seconds=None, metadata=None))
    assert doc["state"] == state.value
    assert doc["error"] == "boom" and doc["provider"] is None and doc["load_seconds"] is None
    assert doc["inputs"] is doc["outputs"] is doc["class_labels"] is doc["input_contract"] is None
    assert doc["example"] is doc["metrics"] is doc["parity"] is None


def test_describe_model_over_a_real_data_plane(tmp_path: Path) -> None:
    write_demo_repo(tmp_path)

    async def main() -> tuple[dict[str, Any], dict[str, Any]]:
        dp = DataPlane(ModelRegistry(Settings(repository=tmp_path, poll_interval_s=0)))
        await dp.registry.start()
        try:
            return describe_model(dp, "m"), describe_model(dp, "broken")
        finally:
            await dp.registry.close()

    m, broken = asyncio.run(main())
    assert m["name"] == "m" and m["default_version"] == 2
    assert m["labels"] == {"stable": 1, "canary": 2}
    assert [(v["version"], v["state"]) for v in m["versions"]] == [(1, "ready"), (2, "ready")]
    assert m["versions"][0]["inputs"] == [{"name": "x", "dtype": "float32", "shape": [-1, 4]}]
    assert all(v["provider"] and v["load_seconds"] is not None for v in m["versions"])
    assert broken["default_version"] is None and broken["labels"] == {}
    (failed,) = broken["versions"]
    assert failed["state"] == "failed" and failed["error"] and failed["inputs"] is None
    assert failed["provider"] is None
