"""Request limits, the same for every protocol, checked before anything is allocated.

Decoders call :meth:`Limits.check_shape` on a tensor's *declared* shape (V2 ``shape``, a TensorProto's
``tensor_shape``, the shape read off a JSON list's first elements) before they build an array, so a
request of a few bytes cannot make the server allocate gigabytes. What describes the request's *size*
(rows, elements, number of inputs) is a 413 / ``RESOURCE_EXHAUSTED``; what no valid request has (a name
longer than any model's, nesting deeper than any tensor) is a 400 / ``INVALID_ARGUMENT``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from service.errors import InvalidInput, PayloadTooLarge
from service.settings import Settings


@dataclass(frozen=True)
class Limits:
    """The limits of :class:`service.settings.Settings` that decoders and the data plane enforce."""

    max_rows: int = 16384
    max_elements: int = 4 * 1024 * 1024
    max_json_depth: int = 32
    max_inputs: int = 16
    max_name_length: int = 256

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        """The limits configured in ``settings`` (a :class:`service.settings.Settings`)."""
        return cls(**{name: getattr(settings, name) for name in cls.__dataclass_fields__})

    def check_count(self, what: str, count: int) -> None:
        """413 when a request names more than ``max_inputs`` inputs (or requested outputs)."""
        if count > self.max_inputs:
            raise PayloadTooLarge(
                f"{count} {what} in one request; the limit is {self.max_inputs}", limit=self.max_inputs
            )

    def check_name(self, what: str, name: str) -> None:
        """400 when a model, version label, input or output name is longer than ``max_name_length``."""
        if len(name) > self.max_name_length:
            raise InvalidInput(
                f"{what} name is {len(name)} characters long; the limit is {self.max_name_length}"
            )

    def check_shape(self, name: str, shape: Sequence[int]) -> int:
        """The element count of a declared ``shape``; 400 above ``max_json_depth`` dimensions, 413 for more
        than ``max_rows`` rows (first dimension) or ``max_elements`` elements."""
        if len(shape) > self.max_json_depth:
            raise InvalidInput(
                f"input {name!r}: {len(shape)} dimensions; the limit is {self.max_json_depth}",
                limit=self.max_json_depth,
            )
        count = math.prod(shape)
        if shape and shape[0] > self.max_rows:
            raise PayloadTooLarge(
                f"input {name!r}: {shape[0]} rows; the limit is {self.max_rows} rows per request",
                limit=self.max_rows,
            )
        if math.prod(d for d in shape if d) > self.max_elements:  # a zero dimension does not excuse the rest
            raise PayloadTooLarge(
                f"input {name!r}: shape {list(shape)} is over the limit of {self.max_elements} elements "
                f"per tensor and per request",
                limit=self.max_elements,
            )
        return count

    def check_total(self, total: int) -> None:
        """413 when a request's tensors together declare more than ``max_elements`` elements."""
        if total > self.max_elements:
            raise PayloadTooLarge(
                f"the inputs have {total} elements together; the limit is {self.max_elements} per request",
                limit=self.max_elements,
            )


DEFAULT_LIMITS = Limits()
"""The defaults (the same as the settings' defaults; a test holds them together)."""
