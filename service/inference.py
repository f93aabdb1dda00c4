"""What a request is once decoded, what it answers, and how its inputs are matched to a signature.

Protocol adapters build an :class:`InferenceRequest`; the data plane (:mod:`service.dataplane`) runs
:func:`validate_inputs` on it and answers an :class:`InferenceResponse`. The shadow mirror
(:mod:`service.ops.shadow`) validates against its target the same way. Nothing here imports the data
plane or the model operations.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from service.batching import Ticket
from service.conversion import convert
from service.errors import InvalidInput
from service.limits import DEFAULT_LIMITS, Limits
from service.schema import ModelMetadata, TensorSpec

Tensors = dict[str, np.ndarray]
Watch = Callable[[Awaitable[Any]], Awaitable[Any]]
"""Runs an awaitable but cancels it (raising :class:`ClientGone`) if the client goes away first."""


@dataclass
class InferenceRequest:
    """A decoded request. ``inputs`` maps input names to arrays; ``None`` as the single key means
    "the model's only input"."""

    model: str
    inputs: dict[str | None, np.ndarray]
    protocol: str
    version: int | None = None
    label: str | None = None
    outputs: list[str] | None = None
    typed: bool = False
    """Whether the arrays carry dtypes the client declared (V2 ``datatype``, TensorProto ``dtype``):
    then only the model's dtype, or an integer dtype that converts to it exactly, is taken. Untyped
    arrays (JSON numbers) are converted to the model's dtype when every value survives exactly."""
    deadline: float | None = None
    """Event-loop time (``loop.time()``) after which the answer is of no use: the request fails
    with 504 / DEADLINE_EXCEEDED then, and queued work for it is dropped unrun."""
    watch: Watch | None = None
    """The transport's client-gone guard; used only while the request has to queue."""
    ticket: Ticket | None = None
    """The admission ticket (:meth:`DataPlane.admitted`), released when the request joins the queue."""
    request_id: str | None = None
    """The client's request id; ``None``: the call context's (:mod:`service.context`), or a new one."""


@dataclass
class InferenceResponse:
    model: str
    version: int
    runtime: str
    outputs: Tensors
    request_id: str = ""
    variant: str | None = None
    """The traffic split's variant key (a label or version) when the split chose the version."""


def _shape_ok(spec: TensorSpec, shape: tuple[int, ...]) -> bool:
    return len(shape) == len(spec.shape) and all(w in (-1, g) for w, g in zip(spec.shape, shape, strict=True))


def validate_inputs(
    metadata: ModelMetadata,
    given: dict[str | None, np.ndarray],
    typed: bool = False,
    limits: Limits = DEFAULT_LIMITS,
) -> tuple[Tensors, int]:
    """Match ``given`` to the signature: names, numeric kind, shape (batch first), rows; convert to the
    model dtype by the dtype rule (:func:`convert`), and refuse NaN and infinities."""
    limits.check_count("inputs", len(given))
    specs = {s.name: s for s in metadata.inputs}
    if None in given:
        if len(specs) != 1:
            raise InvalidInput(f"model {metadata.name!r} has several inputs {sorted(specs)}; name each one")
        named = {metadata.inputs[0].name: given[None]}
    else:
        named = {str(k): v for k, v in given.items()}
    missing = sorted(set(specs) - set(named))
    unknown = sorted(set(named) - set(specs))
    if missing or unknown:
        raise InvalidInput(
            f"inputs do not match the signature of {metadata.name!r}: expected {sorted(specs)}, got {sorted(named)}",
            expected=sorted(specs),
            got=sorted(named),
        )
    arrays: Tensors = {}
    rows: int | None = None
    for name, spec in specs.items():
        array = named[name]
        if array.dtype.kind not in "iufb":
            raise InvalidInput(
                f"input {name!r}: expected {spec.dtype}, got {array.dtype}", expected=spec.dtype
            )
        if not _shape_ok(spec, array.shape):
            raise InvalidInput(
                f"input {name!r}: expected shape {spec.shape} (first dimension = batch), got {list(array.shape)}",
                expected=spec.shape,
                got=list(array.shape),
            )
        if array.shape[0] == 0:
            raise InvalidInput(f"input {name!r} is empty: send at least one row")
        if rows is not None and array.shape[0] != rows:
            raise InvalidInput(f"inputs disagree on the batch size: {rows} vs {array.shape[0]} for {name!r}")
        rows = array.shape[0]
        limits.check_shape(name, array.shape)
        arrays[name] = convert(name, array, np.dtype(spec.dtype), typed)
    assert rows is not None
    return arrays, rows


def select_outputs(outputs: Tensors, wanted: list[str]) -> Tensors:
    """The requested outputs, 400 naming the model's outputs for an unknown one."""
    unknown = [o for o in wanted if o not in outputs]
    if unknown:
        raise InvalidInput(f"unknown output(s) {unknown}; model outputs are {sorted(outputs)}")
    return {o: outputs[o] for o in wanted}
