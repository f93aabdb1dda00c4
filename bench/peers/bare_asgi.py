"""The bare-ASGI ceiling: uvicorn + orjson + ONNX Runtime, nothing else.

Speaks the V2 JSON ``infer`` route (one FP32 input) so it is driven exactly like MLServer and PyTriton.
Run: ``uvicorn bench.peers.bare_asgi:app --workers 2 --loop uvloop --http httptools --no-access-log``.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np
import onnxruntime as ort
import orjson

MODEL = os.environ.get("BENCH_MODEL_NAME", "cnn")
INFER_PATH = f"/v2/models/{MODEL}/infer"
READY_PATHS = ("/v2/health/ready", f"/v2/models/{MODEL}/ready")

_opts = ort.SessionOptions()
_opts.intra_op_num_threads = 1
_opts.inter_op_num_threads = 1
session = ort.InferenceSession(os.environ["BENCH_MODEL_PATH"], _opts, providers=["CPUExecutionProvider"])
INPUT = os.environ.get("BENCH_INPUT") or session.get_inputs()[0].name
OUTPUT = os.environ.get("BENCH_OUTPUT") or session.get_outputs()[0].name
INPUT_SHAPE = json.loads(os.environ.get("BENCH_INPUT_SHAPE", "[28, 28, 1]"))
session.run(None, {INPUT: np.zeros([1, *INPUT_SHAPE], np.float32)})  # warm up


async def _send(send: Any, status: int, body: bytes) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    path = scope["path"]
    if path in READY_PATHS:
        return await _send(send, 200, b"{}")
    if path != INFER_PATH or scope["method"] != "POST":
        return await _send(send, 404, b'{"error":"not found"}')
    chunks = []
    more = True
    while more:
        message = await receive()
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    try:
        tensor = orjson.loads(b"".join(chunks))["inputs"][0]
        x = np.asarray(tensor["data"], dtype=np.float32).reshape(tensor["shape"])
        y = session.run([OUTPUT], {INPUT: x})[0]
    except (KeyError, ValueError, TypeError, IndexError, orjson.JSONDecodeError) as e:
        return await _send(send, 400, orjson.dumps({"error": str(e)}))
    out = {"name": OUTPUT, "shape": list(y.shape), "datatype": "FP32", "data": y.ravel().tolist()}
    await _send(send, 200, orjson.dumps({"model_name": MODEL, "outputs": [out]}))
