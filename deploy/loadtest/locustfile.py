"""Locust scenarios for every protocol and model of the server.

Inputs are generated from the signatures the server reports (``GET /v1/models``), so the same file
works for any repository. Pick scenarios by class name, or run the weighted ``MixedProfile``::

    locust -f deploy/loadtest/locustfile.py --host http://127.0.0.1:3000 --headless -u 64 -r 64 -t 60s \\
        CnnSingleImage                       # one scenario
    locust -f deploy/loadtest/locustfile.py --host http://127.0.0.1:3000 --headless -u 16 -t 30s MixedProfile

Environment: ``LOADTEST_TF_GRPC`` (default 127.0.0.1:8500) and ``LOADTEST_V2_GRPC`` (127.0.0.1:8001)
for the gRPC scenarios; ``LOADTEST_BATCH`` (64) rows for the batch scenarios.
"""

from __future__ import annotations

import json
import os
import time
from functools import lru_cache
from typing import Any

import gevent
import numpy as np
import requests
from locust import HttpUser, between, events, tag, task  # noqa: F401 - `between` for custom profiles

BATCH = int(os.environ.get("LOADTEST_BATCH", "64"))
_rng = np.random.default_rng(0)


@lru_cache(maxsize=8)
def signatures(host: str) -> dict[str, dict[str, Any]]:
    """Model name -> its default version's description, from the server."""
    models = requests.get(host.rstrip("/") + "/v1/models", timeout=10).json()["models"]
    found = {}
    for model in models:
        ready = [v for v in model["versions"] if v["version"] == model["default_version"]]
        if ready:
            found[model["name"]] = ready[0]
    return found


def sample(host: str, model: str, rows: int) -> tuple[str, np.ndarray]:
    """(input name, a random batch) for ``model``; pixel-like values for image inputs."""
    spec = signatures(host)[model]["inputs"][0]
    shape = [rows, *[d if d > 0 else 1 for d in spec["shape"][1:]]]
    high = 255.0 if len(shape) == 4 else 1.0
    return spec["name"], (_rng.random(shape) * high).astype(np.float32)


def native_body(host: str, model: str, rows: int) -> bytes:
    _, x = sample(host, model, rows)
    return json.dumps({"model": model, "inputs": x.round(3).tolist()}).encode()


def v2_binary(host: str, model: str, rows: int) -> tuple[bytes, dict[str, str]]:
    name, x = sample(host, model, rows)
    raw = x.tobytes()
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": name,
                    "shape": list(x.shape),
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": len(raw)},
                }
            ],
            "parameters": {"binary_data_output": True},
        }
    ).encode()
    return header + raw, {"Inference-Header-Content-Length": str(len(header))}


class _Base(HttpUser):
    abstract = True

    def post_json(self, path: str, body: bytes, name: str) -> None:
        with self.client.post(
            path, data=body, headers={"Content-Type": "application/json"}, name=name, catch_response=True
        ) as r:
            if r.status_code != 200:
                r.failure(f"HTTP {r.status_code}: {r.text[:200]}")


class CnnSingleImage(_Base):
    """CNN, one image per JSON request, native API."""

    def on_start(self) -> None:
        self.body = native_body(self.host, "cnn", 1)

    @task
    def predict(self) -> None:
        self.post_json("/v1/predict", self.body, "native cnn x1")


class CnnBatch(_Base):
    """CNN, a batch of ``LOADTEST_BATCH`` images per JSON request."""

    def on_start(self) -> None:
        self.body = native_body(self.host, "cnn", BATCH)

    @task
    def predict(self) -> None:
        self.post_json("/v1/predict", self.body, f"native cnn x{BATCH}")


class MlpRows(_Base):
    def on_start(self) -> None:
        self.body = native_body(self.host, "mlp", 8)

    @task
    def predict(self) -> None:
        self.post_json("/v1/predict", self.body, "native mlp x8")


class RnnSequences(_Base):
    def on_start(self) -> None:
        self.body = native_body(self.host, "rnn", 4)

    @task
    def predict(self) -> None:
        self.post_json("/v1/predict", self.body, "native rnn x4")


class TfServingRest(_Base):
    def on_start(self) -> None:
        _, x = sample(self.host, "cnn", 1)
        self.body = json.dumps({"instances": x.round(3).tolist()}).encode()

    @task
    def predict(self) -> None:
        self.post_json("/v1/models/cnn:predict", self.body, "tfserving-rest cnn x1")


class V2Json(_Base):
    def on_start(self) -> None:
        name, x = sample(self.host, "cnn", 1)
        tensor = {
            "name": name,
            "shape": list(x.shape),
            "datatype": "FP32",
            "data": x.round(3).ravel().tolist(),
        }
        self.body = json.dumps({"inputs": [tensor]}).encode()

    @task
    def infer(self) -> None:
        self.post_json("/v2/models/cnn/infer", self.body, "v2-json cnn x1")


class V2Binary(_Base):
    """V2 binary tensor extension, ``LOADTEST_BATCH`` images per request."""

    def on_start(self) -> None:
        self.body, self.headers = v2_binary(self.host, "cnn", BATCH)

    @task
    def infer(self) -> None:
        with self.client.post(
            "/v2/models/cnn/infer",
            data=self.body,
            headers=self.headers,
            name=f"v2-binary cnn x{BATCH}",
            catch_response=True,
        ) as r:
            if r.status_code != 200 or "Inference-Header-Content-Length" not in r.headers:
                r.failure(f"HTTP {r.status_code}: {r.text[:200]}")


class _GrpcBase(HttpUser):
    """Times gRPC calls as locust requests (request_type 'grpc')."""

    abstract = True

    def timed(self, name: str, call: Any) -> None:
        start = time.perf_counter()
        error: Exception | None = None
        try:
            # gRPC blocks in C: run it on gevent's thread pool so the other simulated users keep going
            gevent.get_hub().threadpool.spawn(call).get()
        except Exception as exc:  # every failure counts as a failed request
            error = exc
        events.request.fire(
            request_type="grpc", name=name, response_time=(time.perf_counter() - start) * 1000,
            response_length=0, exception=error, context={},
        )  # fmt: skip


class V2Grpc(_GrpcBase):
    def on_start(self) -> None:
        import tritonclient.grpc as grpcclient

        self.grpc = grpcclient.InferenceServerClient(os.environ.get("LOADTEST_V2_GRPC", "127.0.0.1:8001"))
        name, x = sample(self.host, "cnn", 1)
        self.inputs = [grpcclient.InferInput(name, list(x.shape), "FP32")]
        self.inputs[0].set_data_from_numpy(x)

    @task
    def infer(self) -> None:
        self.timed("v2-grpc cnn x1", lambda: self.grpc.infer("cnn", self.inputs))


class MixedProfile(_Base):
    """A realistic mix: mostly single images, some batches, tabular and sequence models, every REST protocol."""

    def on_start(self) -> None:
        self.single = native_body(self.host, "cnn", 1)
        self.batch = native_body(self.host, "cnn", 16)
        self.mlp = native_body(self.host, "mlp", 1)
        self.rnn = native_body(self.host, "rnn", 1)
        _, x = sample(self.host, "cnn", 1)
        self.tf = json.dumps({"instances": x.round(3).tolist()}).encode()
        self.v2, self.v2_headers = v2_binary(self.host, "cnn", 4)

    @task(8)
    def cnn_single(self) -> None:
        self.post_json("/v1/predict", self.single, "mixed native cnn x1")

    @task(1)
    def cnn_batch(self) -> None:
        self.post_json("/v1/predict", self.batch, "mixed native cnn x16")

    @task(3)
    def mlp_row(self) -> None:
        self.post_json("/v1/predict", self.mlp, "mixed native mlp x1")

    @task(2)
    def rnn_row(self) -> None:
        self.post_json("/v1/predict", self.rnn, "mixed native rnn x1")

    @task(2)
    def tfserving(self) -> None:
        self.post_json("/v1/models/cnn:predict", self.tf, "mixed tfserving-rest cnn x1")

    @task(2)
    def v2_binary(self) -> None:
        with self.client.post(
            "/v2/models/cnn/infer",
            data=self.v2,
            headers=self.v2_headers,
            name="mixed v2-binary cnn x4",
            catch_response=True,
        ) as r:
            if r.status_code != 200:
                r.failure(f"HTTP {r.status_code}")
