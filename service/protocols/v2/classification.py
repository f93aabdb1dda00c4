"""Triton's classification extension: an output asked for with ``parameters.classification = K``
(tritonclient's ``InferRequestedOutput(name, class_count=K)``) comes back as the top ``K`` classes of
each row, BYTES strings ``"value:index"`` or ``"value:index:label"`` as Triton writes them.

Rows are ranked by value, highest first (the lower index first on a tie); ``K`` larger than the number
of classes gives them all. The labels are the version's class names (``metadata.json`` ``labels``), used
when there is one per class of the output. Only outputs of shape ``[batch, classes]`` classify: any
other is a 400 naming its shape. BYTES travel as Triton's do: in JSON a list of strings, as binary data
(REST) and ``raw_output_contents`` (gRPC) each element as a 4-byte little-endian length and its bytes.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from service.dataplane import DataPlane, InferenceResponse
from service.errors import InvalidInput

BYTES = np.dtype(object)
"""The dtype of a classification answer (an array of ``bytes``)."""


def class_count(name: str, raw: Any) -> int:
    """A requested output's ``classification`` parameter as a count of classes (400 unless an int >= 1)."""
    if type(raw) is not int or raw < 1:
        raise InvalidInput(f"output {name!r}: parameters.classification must be an integer >= 1, got {raw!r}")
    return raw


def class_counts(payload: dict[str, Any]) -> dict[str, int]:
    """``{output: K}`` of a V2 JSON request's ``outputs`` with a ``classification`` parameter (the list
    already checked by :func:`~service.protocols.v2.codec.requested_outputs`)."""
    return {
        o["name"]: class_count(o["name"], o["parameters"]["classification"])
        for o in payload.get("outputs") or ()
        if isinstance(o.get("parameters"), dict) and "classification" in o["parameters"]
    }


def grpc_class_counts(outputs: Iterable[Any]) -> dict[str, int]:
    """``{output: K}`` of a ``ModelInferRequest``'s requested outputs with a ``classification`` parameter."""
    counts = {}
    for output in outputs:
        if "classification" in output.parameters:
            param = output.parameters["classification"]
            raw = getattr(param, param.WhichOneof("parameter_choice") or "int64_param")
            counts[output.name] = class_count(output.name, raw)
    return counts


def answer_outputs(
    dataplane: DataPlane, result: InferenceResponse, counts: dict[str, int]
) -> dict[str, np.ndarray]:
    """``result``'s outputs, those in ``counts`` classified with the answering version's class names."""
    if not counts:
        return result.outputs
    meta = dataplane.find(result.model, result.version).metadata
    return classify(result.outputs, counts, meta.labels if meta is not None else None)


def classify(
    outputs: dict[str, np.ndarray], counts: dict[str, int], labels: list[str] | None
) -> dict[str, np.ndarray]:
    """``outputs`` with each output in ``counts`` replaced by its top classes per row (BYTES)."""
    if not counts:
        return outputs
    classified = dict(outputs)
    for name, k in counts.items():
        scores = outputs[name]
        if scores.ndim != 2:
            raise InvalidInput(
                f"output {name!r} has shape {list(scores.shape)}; classification needs [batch, classes]"
            )
        named = labels if labels is not None and len(labels) == scores.shape[1] else None
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        classified[name] = np.array(
            [
                [_entry(float(row[i]), int(i), named) for i in top]
                for row, top in zip(scores, order, strict=True)
            ],
            dtype=BYTES,
        ).reshape(scores.shape[0], -1)
    return classified


def _entry(value: float, index: int, labels: list[str] | None) -> bytes:
    text = f"{value:f}:{index}" if labels is None else f"{value:f}:{index}:{labels[index]}"
    return text.encode()


def bytes_tensor(array: np.ndarray) -> bytes:
    """A BYTES tensor as Triton's binary layout: each element's 4-byte little-endian length, then it."""
    return b"".join(len(item).to_bytes(4, "little") + item for item in array.reshape(-1))
