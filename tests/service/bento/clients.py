"""Keep-alive clients in threads that record every outcome, for the drain and worker-crash tests."""

from __future__ import annotations

import http.client
import json
import threading
import time
from dataclasses import dataclass, field

import grpc
import numpy as np
from tensorflow_serving.apis import prediction_service_pb2_grpc
from tritonclient.grpc import service_pb2, service_pb2_grpc

from tests.service.protocols.test_grpc_protocols_e2e import predict_request

X = np.full((1, 4), 3.0, np.float32)
NATIVE = json.dumps({"model": "m", "inputs": X.tolist()}).encode()


@dataclass
class Outcome:
    at: float
    what: str  # "ok", "wrong", "refused", "unavailable" or the error
    closing: bool = False  # the answer carried Connection: close
    port: int = 0  # the client's local port (which connection)
    fresh: bool = False  # sent on a connection opened for it (not one that had served before)


@dataclass
class Client:
    """A thread sending requests back to back until :attr:`stop` is set (or the server is gone)."""

    kind: str
    target: str
    stop: threading.Event
    outcomes: list[Outcome] = field(default_factory=list)
    thread: threading.Thread | None = None

    def start(self) -> Client:
        run = {"http": self._http, "tfserving": self._grpc, "v2": self._grpc}[self.kind]
        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        return self

    def join(self) -> None:
        assert self.thread is not None
        self.thread.join(timeout=30)

    def failures(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.what not in ("ok", "refused", "unavailable")]

    def _http(self) -> None:
        host, port = self.target.split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
        while not self.stop.is_set():
            fresh = conn.sock is None
            try:
                conn.request("POST", "/v1/predict", NATIVE, {"Content-Type": "application/json"})
                local = conn.sock.getsockname()[1] if conn.sock else 0
                answer = conn.getresponse()
                body = answer.read()
                good = answer.status == 200 and json.loads(body)["outputs"]["y"] == X.tolist()
                closing = (answer.getheader("connection") or "").lower() == "close"
                self.outcomes.append(
                    Outcome(time.monotonic(), "ok" if good else f"wrong {answer.status}", closing, local)
                )
            except ConnectionRefusedError:
                self.outcomes.append(Outcome(time.monotonic(), "refused"))
                conn.close()
                time.sleep(0.02)
            except (OSError, http.client.HTTPException) as exc:
                self.outcomes.append(Outcome(time.monotonic(), f"{type(exc).__name__}: {exc}", fresh=fresh))
                conn.close()

    def _grpc(self) -> None:
        channel = grpc.insecure_channel(self.target, options=[("grpc.use_local_subchannel_pool", 1)])
        if self.kind == "tfserving":
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            call, request = stub.Predict, predict_request("m", X)
        else:
            stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
            request = service_pb2.ModelInferRequest(model_name="m")
            request.inputs.add(name="x", datatype="FP32", shape=[1, 4])
            request.raw_input_contents.append(X.tobytes())
            call = stub.ModelInfer
        while not self.stop.is_set():
            try:
                call(request, timeout=10)
                self.outcomes.append(Outcome(time.monotonic(), "ok"))
            except grpc.RpcError as exc:
                code = exc.code()  # type: ignore[attr-defined]
                what = "unavailable" if code == grpc.StatusCode.UNAVAILABLE else f"{code}: {exc.details()}"  # type: ignore[attr-defined]
                self.outcomes.append(Outcome(time.monotonic(), what))
                time.sleep(0.02)
        channel.close()
