"""One soak client: a keep-alive HTTP connection and two long-lived gRPC channels, and how each kind of
request is sent and its answer decoded into an array.

Each client owns its own connections (one per thread), so the kernel spreads them over the server's
workers (every worker listens on the same ports with ``SO_REUSEPORT``); the gRPC channels use a local
subchannel pool so that they do not share one TCP connection.
"""

from __future__ import annotations

import http.client
import json
from typing import Any

import grpc
import numpy as np
import orjson

from bench.soak_cases import Case

GRPC_OPTIONS = [("grpc.use_local_subchannel_pool", 1), ("grpc.max_receive_message_length", 64 << 20)]


class RequestFailed(Exception):
    """An answer that is not a success (status, gRPC code or transport error)."""


class Client:
    def __init__(self, host: str, port: int, tf_grpc: str, v2_grpc: str, timeout_s: float = 30.0) -> None:
        from tritonclient.grpc import service_pb2_grpc

        from service.protocols.tfserving.protos import tfserving_protos

        self.host, self.port, self.timeout_s = host, port, timeout_s
        self.http = http.client.HTTPConnection(host, port, timeout=timeout_s)
        self._channels = [grpc.insecure_channel(t, options=GRPC_OPTIONS) for t in (tf_grpc, v2_grpc)]
        pb = tfserving_protos()
        self.tf = pb.prediction_service_pb2_grpc.PredictionServiceStub(self._channels[0])
        self.v2 = service_pb2_grpc.GRPCInferenceServiceStub(self._channels[1])
        self.reconnects = 0

    def wait_grpc_ready(self, timeout_s: float) -> None:
        for channel in self._channels:
            grpc.channel_ready_future(channel).result(timeout=timeout_s)

    def close(self) -> None:
        self.http.close()
        for channel in self._channels:
            channel.close()

    def send(self, kind: str, case: Case) -> np.ndarray:
        """Send ``case`` as ``kind``; the output tensor, or :class:`RequestFailed`."""
        if kind in case.rest:
            return self._rest(kind, case)
        try:
            if kind == "tfserving_grpc":
                reply = self.tf.Predict(case.grpc[kind], timeout=self.timeout_s)
                return _tf_tensor(reply.outputs[case.output_name])
            reply = self.v2.ModelInfer(case.grpc[kind], timeout=self.timeout_s)
            [out] = [o for o in reply.outputs if o.name == case.output_name]
            idx = list(reply.outputs).index(out)
            return np.frombuffer(reply.raw_output_contents[idx], "<f4").reshape(tuple(out.shape))
        except grpc.RpcError as e:
            raise RequestFailed(f"{kind} {case.name}: gRPC {e.code().name}: {e.details()}") from None

    def _rest(self, kind: str, case: Case) -> np.ndarray:
        req = case.rest[kind]
        try:
            self.http.request("POST", req.path, body=req.body, headers=req.headers)
            resp = self.http.getresponse()
            body = resp.read()
        except (OSError, http.client.HTTPException) as e:
            self.http.close()  # the next request opens a new connection
            self.reconnects += 1
            raise RequestFailed(f"{kind} {case.name}: {type(e).__name__}: {e}") from None
        if resp.status != 200:
            raise RequestFailed(f"{kind} {case.name}: HTTP {resp.status}: {body[:200]!r}")
        if kind == "v2_binary":
            return _v2_binary(body, resp.getheader("Inference-Header-Content-Length"), case.output_name)
        doc = orjson.loads(body)
        return decode_json(kind, doc, case.output_name)


def decode_json(kind: str, doc: Any, output: str) -> np.ndarray:
    """The output tensor of a JSON answer of the native, TF Serving REST or V2 JSON protocol."""
    if kind == "native":
        outs = doc["outputs"]
        return np.asarray(outs[output] if isinstance(outs, dict) else outs, np.float32)
    if kind == "tfserving_rest":
        return np.asarray(doc["predictions"], np.float32)
    [out] = [o for o in doc["outputs"] if o["name"] == output]
    return np.asarray(out["data"], np.float32).reshape(out["shape"])


def _v2_binary(body: bytes, header_len: str | None, output: str) -> np.ndarray:
    if header_len is None:
        raise RequestFailed("v2_binary: no Inference-Header-Content-Length in the answer")
    n = int(header_len)
    header = json.loads(body[:n])
    offset = n
    for out in header["outputs"]:
        size = int(out["parameters"]["binary_data_size"])
        if out["name"] == output:
            return np.frombuffer(body[offset : offset + size], "<f4").reshape(out["shape"])
        offset += size
    raise RequestFailed(f"v2_binary: no output {output!r} in the answer")


def _tf_tensor(tensor: Any) -> np.ndarray:
    shape = tuple(d.size for d in tensor.tensor_shape.dim)
    if tensor.tensor_content:
        return np.frombuffer(tensor.tensor_content, "<f4").reshape(shape)
    return np.asarray(tensor.float_val, np.float32).reshape(shape)
