"""The dtype rule, the same for every protocol: how a decoded array becomes the model input's dtype.

Called by the data plane once an input has matched its signature entry; documented in the README's
Errors section.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from service.errors import InvalidInput


def convert(name: str, array: np.ndarray, target: np.dtype[Any], typed: bool) -> np.ndarray:
    """``array`` as ``target``, the model input's dtype, where no value changes; 400 otherwise.

    A declared dtype (``typed``) must be ``target`` or an integer dtype NumPy widens to it without loss
    (INT8/16 and UINT8/16 to FP32; FP16 or FP64 to FP32 is refused, as TF Serving does). JSON numbers
    (untyped) convert when each value is exact in ``target``: integers within its range (and, for a
    float target, within its integer-exact range), no fractional numbers for an integer target. NaN and
    infinities are refused on every protocol, whatever their source (an overflowing cast included).
    """
    source = array.dtype
    if source != target:
        if typed and not (source.kind in "iu" and np.can_cast(source, target, "safe")):
            raise InvalidInput(
                f"input {name!r}: expected {target}, got {source} (send the model's dtype; only integer "
                f"dtypes that convert exactly are taken)",
                expected=str(target),
                got=str(source),
            )
        if not typed:
            _check_exact(name, array, target)
        with np.errstate(over="ignore", invalid="ignore"):
            array = array.astype(target)
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise InvalidInput(
            f"input {name!r}: NaN and infinite values are not accepted (or a value overflows {target})"
        )
    return array


def _check_exact(name: str, array: np.ndarray, target: np.dtype[Any]) -> None:
    """400 unless every value of the untyped ``array`` is exactly representable in ``target``."""
    if array.size == 0 or (array.dtype.kind not in "iu" and target.kind == "f"):
        return  # float to float: rounding to the nearest value is what a JSON decimal means
    if target.kind == "b":
        ok = bool(np.isin(array, (0, 1)).all())
    elif target.kind == "f":
        bound = 2 ** (np.finfo(target).nmant + 1)
        ok = bool(-bound <= array.min() and array.max() <= bound)
    else:
        info = np.iinfo(target)
        integral = array.dtype.kind != "f" or bool(
            np.isfinite(array).all() and (array == np.round(array)).all()
        )
        ok = integral and bool(info.min <= array.min() and array.max() <= info.max)
    if not ok:
        raise InvalidInput(f"input {name!r}: values do not fit the model's {target} exactly")
