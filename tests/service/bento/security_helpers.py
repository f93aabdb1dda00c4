"""What the access-control and TLS end-to-end tests share: tokens, a certificate authority, and one call
of each protocol with real clients."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import trustme

from service.protocols.tfserving.protos import tfserving_protos

INFER = "inference-token-0123456789abcdef"
ADMIN = "admin-token-0123456789abcdef"
FILE_INFER = "file-inference-token-0123456789"  # known to the server only as a hash in the token file
FILE_BOTH = "file-both-scopes-token-0123456789"
WRONG = "not-a-token-of-this-server-0123"
X = np.array([[1, 2, 3, 4]], np.float32)  # model m's default version (2) doubles it


def bearer(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def grpc_bearer(token: str | None) -> dict[str, str]:
    """tritonclient.grpc's ``headers`` become gRPC metadata, whose keys must be lowercase."""
    return {"authorization": f"Bearer {token}"} if token else {}


def grpc_metadata(token: str | None) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),) if token else ()


def write_token_file(path: Path, grants: dict[str, str]) -> Path:
    """Token file of ``{token: "scope[,scope]"}``, holding only the tokens' sha256 digests."""
    lines = ["# written by the tests: sha256 of each token, then its scopes"]
    lines += [f"sha256:{hashlib.sha256(t.encode()).hexdigest()} {scopes}" for t, scopes in grants.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def write_certificates(folder: Path) -> dict[str, Path]:
    """A test CA and a server certificate for 127.0.0.1/localhost: ``{"ca", "cert", "key"}`` paths."""
    ca = trustme.CA()
    issued = ca.issue_cert("127.0.0.1", "localhost")
    paths = {"ca": folder / "ca.pem", "cert": folder / "cert.pem", "key": folder / "key.pem"}
    ca.cert_pem.write_to_path(str(paths["ca"]))
    issued.private_key_pem.write_to_path(str(paths["key"]))
    paths["cert"].write_bytes(b"".join(pem.bytes() for pem in issued.cert_chain_pems))
    return paths


def tfserving_predict_request(x: np.ndarray = X) -> object:
    """A TF Serving ``PredictRequest`` for model m with ``x`` (float32; :data:`X` unless given), built
    without TensorFlow."""
    pb = tfserving_protos()
    request = pb.predict_pb2.PredictRequest()
    request.model_spec.name = "m"
    tensor = request.inputs["x"]
    tensor.dtype = pb.types_pb2.DT_FLOAT
    for size in x.shape:
        tensor.tensor_shape.dim.add(size=size)
    tensor.tensor_content = x.tobytes()
    return request


def tfserving_output(response: object) -> np.ndarray:
    tensor = response.outputs["y"]  # type: ignore[attr-defined]
    values = np.frombuffer(tensor.tensor_content, np.float32) if tensor.tensor_content else tensor.float_val
    return np.asarray(values, np.float32).reshape([d.size for d in tensor.tensor_shape.dim])
