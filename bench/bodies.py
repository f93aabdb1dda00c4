"""The model under test (from its ``metadata.json``) and the request bodies every server is sent.

Every single-image request carries the same 28×28 picture (raw grey levels 0–255, written as JSON
floats such as ``137.0`` so that every server's JSON parser takes them as FP32 values).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.config import BATCH_IMAGES, Scenario


@dataclass(frozen=True)
class ModelInfo:
    """Where the ONNX file is and what its tensors are called."""

    name: str
    version: int
    onnx_path: Path
    input_name: str
    output_name: str
    input_shape: tuple[int, ...]  # without the batch dimension

    def env(self) -> dict[str, str]:
        """How the peer servers are told about the model (environment variables)."""
        return {
            "BENCH_MODEL_NAME": self.name,
            "BENCH_MODEL_PATH": str(self.onnx_path),
            "BENCH_INPUT": self.input_name,
            "BENCH_OUTPUT": self.output_name,
            "BENCH_INPUT_SHAPE": json.dumps(list(self.input_shape)),
        }


def find_model(repo: Path, name: str, version: int | None = None) -> ModelInfo:
    """The given (or newest) version of ``name`` in ``repo`` that has ``metadata.json`` and ``model.onnx``."""
    folder = repo / name
    versions = sorted(
        int(p.name)
        for p in folder.glob("*")
        if p.name.isdigit() and (p / "metadata.json").is_file() and (p / "model.onnx").is_file()
    )
    if not versions:
        raise FileNotFoundError(f"no version of {name!r} with metadata.json and model.onnx under {folder}")
    chosen = version if version is not None else versions[-1]
    if chosen not in versions:
        raise FileNotFoundError(f"{name} version {chosen} not found; have {versions}")
    meta = json.loads((folder / str(chosen) / "metadata.json").read_text())
    spec_in, spec_out = meta["inputs"][0], meta["outputs"][0]
    return ModelInfo(
        name=name,
        version=chosen,
        onnx_path=(folder / str(chosen) / "model.onnx").resolve(),
        input_name=spec_in["name"],
        output_name=spec_out["name"],
        input_shape=tuple(int(d) for d in spec_in["shape"][1:]),
    )


def sample_images(model: ModelInfo, rows: int, seed: int = 0) -> np.ndarray:
    """``rows`` images of whole grey levels 0–255, float32, shaped like the model's input."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(rows, *model.input_shape)).astype(np.float32)


def _dump(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def native_body(model: ModelInfo, x: np.ndarray) -> bytes:
    return _dump({"model": model.name, "inputs": x.tolist()})


def v2_json_body(model: ModelInfo, x: np.ndarray) -> bytes:
    tensor = {
        "name": model.input_name,
        "shape": list(x.shape),
        "datatype": "FP32",
        "data": x.ravel().tolist(),
    }
    return _dump({"inputs": [tensor]})


def v2_binary_body(model: ModelInfo, x: np.ndarray) -> tuple[bytes, int]:
    """(body, header length) in the V2 binary tensor extension; the output comes back binary too."""
    raw = x.astype("<f4").tobytes()
    tensor = {
        "name": model.input_name,
        "shape": list(x.shape),
        "datatype": "FP32",
        "parameters": {"binary_data_size": len(raw)},
    }
    header = _dump({"inputs": [tensor], "parameters": {"binary_data_output": True}})
    return header + raw, len(header)


def naive_body(x: np.ndarray) -> bytes:
    """The naive BentoML service takes ``{"pixels": <array>}`` (its argument's name)."""
    return _dump({"pixels": x.tolist()})


JSON = {"Content-Type": "application/json"}


def write_scenarios(model: ModelInfo, folder: Path) -> dict[str, Scenario]:
    """Write every body into ``folder`` and return the scenarios by name."""
    folder.mkdir(parents=True, exist_ok=True)
    one = sample_images(model, 1)
    batch = sample_images(model, BATCH_IMAGES, seed=1)
    v2_path = f"/v2/models/{model.name}/infer"
    binary, header_len = v2_binary_body(model, batch)
    bodies: dict[str, tuple[bytes, str, dict[str, str], int, str | None]] = {
        "native-json": (native_body(model, one), "/v1/predict", JSON, 1, "native"),
        "v2-json": (v2_json_body(model, one), v2_path, JSON, 1, "v2_rest"),
        f"v2-binary-x{BATCH_IMAGES}": (
            binary,
            v2_path,
            {"Content-Type": "application/octet-stream", "Inference-Header-Content-Length": str(header_len)},
            BATCH_IMAGES,
            None,
        ),
        "naive-json": (naive_body(one), "/predict", JSON, 1, None),
    }
    scenarios = {}
    for name, (body, path, headers, images, protocol) in bodies.items():
        body_file = folder / f"{name}.body"
        body_file.write_bytes(body)
        scenarios[name] = Scenario(name, path, body_file, headers, images, protocol)
    return scenarios
