"""What the soak sends: for every model, fixed inputs with a reference output, encoded once per protocol.

The inputs are the model's own example batch from ``metadata.json`` (real held-out rows): its first row
alone and the whole batch. The reference is computed once per model and input with ONNX Runtime on
the same ``model.onnx`` the server loads; answers are compared with a small tolerance because the
server batches concurrent requests, and a row computed inside a larger batch may differ in its last bits.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

# request kinds; the five protocols, with KServe V2 REST as both JSON and the binary tensor extension
KINDS = ("native", "tfserving_rest", "v2_json", "v2_binary", "tfserving_grpc", "v2_grpc")
RTOL, ATOL = 1e-4, 1e-5


@dataclass(frozen=True)
class RestRequest:
    path: str
    body: bytes
    headers: dict[str, str]


@dataclass
class Case:
    """One model version and one input, with its expected output and a ready request per kind."""

    model: str
    version: int
    input_name: str
    output_name: str
    x: np.ndarray
    reference: np.ndarray
    rest: dict[str, RestRequest] = field(default_factory=dict)
    grpc: dict[str, Any] = field(default_factory=dict)  # kind -> request message, built once

    @property
    def name(self) -> str:
        return f"{self.model} x{self.x.shape[0]}"

    def matches(self, out: np.ndarray) -> bool:
        return out.shape == self.reference.shape and bool(np.allclose(out, self.reference, RTOL, ATOL))


def _dump(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def model_names(repo: Path) -> list[str]:
    """Every model folder in ``repo`` with at least one version that has ``metadata.json`` and ``model.onnx``."""
    return sorted(
        d.name
        for d in repo.iterdir()
        if d.is_dir()
        and not d.name.startswith(".")
        and any((v / "model.onnx").is_file() for v in d.iterdir())
    )


def _rest_requests(case: Case) -> dict[str, RestRequest]:
    m, v, x = case.model, case.version, case.x
    json_h = {"Content-Type": "application/json"}
    v2_tensor = {"name": case.input_name, "shape": list(x.shape), "datatype": "FP32"}
    raw = x.astype("<f4").tobytes()
    header = _dump({"inputs": [{**v2_tensor, "parameters": {"binary_data_size": len(raw)}}],
                    "parameters": {"binary_data_output": True}})  # fmt: skip
    return {
        "native": RestRequest("/v1/predict", _dump({"model": m, "version": v, "inputs": x.tolist()}), json_h),
        "tfserving_rest": RestRequest(
            f"/v1/models/{m}/versions/{v}:predict", _dump({"instances": x.tolist()}), json_h
        ),
        "v2_json": RestRequest(
            f"/v2/models/{m}/versions/{v}/infer",
            _dump({"inputs": [{**v2_tensor, "data": x.ravel().tolist()}]}),
            json_h,
        ),
        "v2_binary": RestRequest(
            f"/v2/models/{m}/versions/{v}/infer",
            header + raw,
            {"Content-Type": "application/octet-stream", "Inference-Header-Content-Length": str(len(header))},
        ),
    }


def _grpc_requests(case: Case) -> dict[str, Any]:
    from tritonclient.grpc import service_pb2

    from service.protocols.tfserving.protos import tfserving_protos

    pb = tfserving_protos()
    x = case.x.astype("<f4")
    tf = pb.predict_pb2.PredictRequest()
    tf.model_spec.name = case.model
    tf.model_spec.version.value = case.version
    tensor = tf.inputs[case.input_name]
    tensor.dtype = pb.types_pb2.DT_FLOAT
    for d in x.shape:
        tensor.tensor_shape.dim.add().size = d
    tensor.tensor_content = x.tobytes()
    v2 = service_pb2.ModelInferRequest(model_name=case.model, model_version=str(case.version))
    v2.inputs.add(name=case.input_name, datatype="FP32", shape=list(x.shape))
    v2.raw_input_contents.append(x.tobytes())
    return {"tfserving_grpc": tf, "v2_grpc": v2}


def load_cases(repo: Path, models: list[str] | None = None) -> list[Case]:
    """Two cases per model (first example row, whole example batch) at its newest version."""
    import onnxruntime as ort

    from bench.bodies import find_model

    cases = []
    for name in models or model_names(repo):
        info = find_model(repo, name)
        meta = json.loads((info.onnx_path.parent / "metadata.json").read_text())
        batch = np.asarray(meta["example"][info.input_name], np.float32)
        if len(batch) < 2:  # a one-row example: add its mirror image (along the first axis) as a second row
            batch = np.concatenate([batch, batch[:, ::-1]])
        session = ort.InferenceSession(str(info.onnx_path), providers=["CPUExecutionProvider"])
        for x in (batch[:1], batch):
            ref = np.asarray(session.run([info.output_name], {info.input_name: x})[0], np.float32)
            case = Case(name, info.version, info.input_name, info.output_name, x, ref)
            case.rest, case.grpc = _rest_requests(case), _grpc_requests(case)
            cases.append(case)
    return cases


def schedule(cases: list[Case], kinds: tuple[str, ...] = KINDS, seed: int = 0) -> list[tuple[str, Case]]:
    """Every (kind, case) pair once, in a fixed shuffled order; request ``i`` sends entry ``i % len``."""
    jobs = [(k, c) for k in kinds for c in cases]
    random.Random(seed).shuffle(jobs)
    return jobs
