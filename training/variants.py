"""Precision variants next to ``model.onnx``, each exported only when its held-out metric stays within a gate.

``int8`` is ONNX Runtime static quantization of ``model.onnx`` into ``model.int8.onnx``: QDQ format (read by
ONNX Runtime, which fuses it into integer kernels, and by OpenVINO), uint8 activations and int8 weights
with ``reduce_range`` (7-bit weights: the u8 x s8 products of AVX2 CPUs without VNNI saturate at full
range: on the CNN the max output deviation was 0.076 without it, 0.024 with it), per-tensor scales, MinMax
ranges calibrated on training inputs (the CNN: 512 images drawn with the training seed; the other models:
all their training rows). Only the dense layers (MatMul, Gemm) are quantized. The input scaling layers
(Rescaling, Normalization) stay float, so raw features of very different ranges (the diabetes model's
sex 1/2 beside its s1 ~100-300) never share one uint8 scale. Convolutions stay float too: measured one
thread on the AMX Xeon (full CNN, ONNX Runtime 1.32, QDQ propagation off as the server runs it,
:data:`service.runtimes.onnx.DISABLED_OPTIMIZERS`), quantizing the Conv as well gave 15,400 / 21,500
images/s at batch 1 / 64, the dense layers alone 35,400 / 78,200, fp32 6,400 / 53,900. The CNN's
Dense(128) streams 2.77 MB of float weights per call (0.69 MB as int8, which stays in a 2 MB L2), while
its one Conv is small and runs fastest in ONNX Runtime's blocked float layout.

The metric is the one ``metadata.json``'s ``metrics`` block reports, computed again for ``model.onnx`` and for
the variant on the same held-out split (``data.x_test``, the split :func:`training.train.train` evaluates;
:mod:`training.cards` takes its parity inputs from it too), with the same code (``train._evaluate``).
A variant whose loss is over its gate is not written; ``metadata.json`` still records it with the reason.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from training.data import Dataset

log = logging.getLogger("training.variants")

VARIANTS = ("int8",)
"""What ``--variants`` accepts (bf16 is no file: OpenVINO runs ``model.onnx`` with a bf16 hint)."""
DEFAULT_VARIANTS = ("int8",)
"""Exported by default: the int8 variant costs about 1 s per model beside 75 s of CNN training."""
VARIANT_FILES = {"int8": "model.int8.onnx"}
CALIBRATION_IMAGES = 512
QUANTIZED_OPS = ["MatMul", "Gemm"]
INT8_METHOD = (
    "onnxruntime quantize_static: QDQ, uint8 activations / int8 weights (reduce_range), per-tensor, "
    f"MinMax, ops {'/'.join(QUANTIZED_OPS)}"
)


@dataclass(frozen=True)
class Gate:
    """How much worse than fp32 a variant may be on the held-out metric.

    * ``cnn``, ``cifar10``: accuracy may drop by at most 0.3 points (30 of the 10,000 MNIST test images).
    * ``mlp``: accuracy may drop by at most one held-out row (1/89 = 1.12 points). Accuracy on 89 rows moves
      in steps of 1.12 points, so a 0.3-point gate could not tell one borderline patient (probability near
      0.5) flipping from a broken variant; seed-to-seed, the fp32 model itself spans 71-76 % (5 points).
      Two flipped rows (2.2 points) are rejected.
    * ``rnn``: the held-out MSE may grow by at most 2 % (relative). Seed-to-seed the fp32 MSE spans
      0.25-0.27 (about +-4 %), so 2 % is half the training noise, about 0.003 degC of RMS error, while
      the naive last-value forecast (MSE 1.37) stays five times worse.
    * ``linear``: no variants (a single weight and bias: int8 would only add quantize steps).
    """

    metric: str
    higher_is_better: bool
    limit: float
    unit: str  # "points": absolute, metric x 100; "percent": relative to fp32, x 100
    rows: int = 0  # or this many held-out rows' worth of accuracy, where that is more

    def loss(self, fp32: float, variant: float) -> float:
        """How much worse ``variant`` is than ``fp32``, in :attr:`unit` (negative: better)."""
        worse = fp32 - variant if self.higher_is_better else variant - fp32
        return 100.0 * (worse if self.unit == "points" else worse / abs(fp32))

    def limit_for(self, samples: int) -> float:
        """The gate for a held-out set of ``samples`` rows (the MLP's is one row's worth of accuracy)."""
        return max(self.limit, 100.0 * self.rows / samples)


GATES = {
    "cnn": Gate("accuracy", True, 0.3, "points"),
    "cifar10": Gate("accuracy", True, 0.3, "points"),
    "mlp": Gate("accuracy", True, 0.0, "points", rows=1),
    "rnn": Gate("test_mse", False, 2.0, "percent"),
}


def parse_variants(text: str) -> list[str]:
    """``"int8"`` -> ``["int8"]``; ``""`` or ``"none"`` -> ``[]``; unknown names raise ``ValueError``."""
    names = [n.strip() for n in text.split(",") if n.strip() and n.strip() != "none"]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise ValueError(f"unknown variant {', '.join(map(repr, unknown))}; valid: {', '.join(VARIANTS)}")
    return list(dict.fromkeys(names))


class OnnxPredictor:
    """An ONNX file behind the ``predict(x, batch_size=, verbose=)`` call that ``train._evaluate`` makes."""

    def __init__(self, path: Path) -> None:
        from service.runtimes.onnx import open_session  # the session the server would run

        self.session = open_session(path)
        self.input = self.session.get_inputs()[0].name

    def predict(self, x: np.ndarray, batch_size: int = 1024, verbose: int = 0) -> np.ndarray:
        parts = [
            self.session.run(None, {self.input: x[i : i + batch_size]})[0]
            for i in range(0, len(x), batch_size)
        ]
        return np.concatenate(parts)


def calibration_inputs(name: str, data: Dataset, seed: int) -> np.ndarray:
    """The CNNs: :data:`CALIBRATION_IMAGES` training images (seeded draw); the others: every training row."""
    x = data.x_train
    if name in {"cnn", "cifar10"} and len(x) > CALIBRATION_IMAGES:
        x = x[np.random.default_rng(seed).choice(len(x), CALIBRATION_IMAGES, replace=False)]
    return np.ascontiguousarray(x, np.float32)


def quantize_int8(source: Path, target: Path, calibration: np.ndarray, batch: int = 64) -> None:
    """Write the static int8 (QDQ) quantization of ``source`` to ``target``, calibrated on ``calibration``."""
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    input_name = ort.InferenceSession(str(source), providers=["CPUExecutionProvider"]).get_inputs()[0].name

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches: Iterator[dict[str, np.ndarray]] = (
                {input_name: calibration[i : i + batch]} for i in range(0, len(calibration), batch)
            )

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.batches, None)

    with tempfile.TemporaryDirectory(prefix="quantize-") as work:  # nothing but the result lands in staging
        prepared = Path(work) / "prepared.onnx"
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            prepared, target, Reader(), quant_format=QuantFormat.QDQ, op_types_to_quantize=QUANTIZED_OPS,
            per_channel=False, reduce_range=True, activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
        )  # fmt: skip


def held_out_metric(name: str, path: Path, data: Dataset) -> tuple[dict[str, float], np.ndarray]:
    """The ``metrics`` block of ``train._evaluate`` for the ONNX file ``path``, and its held-out outputs."""
    from training.train import TrainConfig, _evaluate

    model = OnnxPredictor(path)
    return _evaluate(TrainConfig(model=name, progress=False), model, data), model.predict(data.x_test)


def build_variants(
    staging: Path,
    name: str,
    data: Dataset,
    requested: Sequence[str],
    seed: int = 0,
    calibration: np.ndarray | None = None,
) -> dict[str, dict[str, Any]]:
    """Write each requested variant of ``staging/model.onnx`` that passes its gate; return ``variants``.

    The result is ``metadata.json``'s ``variants`` block. A variant over its gate, or one the model has
    no gate for, is an entry with ``exported: false`` and its ``reason`` (logged as a warning), and no
    file. ``calibration`` replaces :func:`calibration_inputs` (tests use it to provoke a bad variant).
    """
    from training.export import sha256_file

    block: dict[str, dict[str, Any]] = {}
    gate = GATES.get(name)
    if gate is None:
        for precision in requested:
            reason = f"{name} has no {precision} variant (a single weight and bias: nothing to gain)"
            log.info("%s: %s variant not exported: %s", name, precision, reason)
            block[precision] = {"exported": False, "reason": reason}
        return block
    if not requested:
        return block
    calibration = calibration_inputs(name, data, seed) if calibration is None else calibration
    fp32_metrics, fp32_out = held_out_metric(name, staging / "model.onnx", data)
    for precision in requested:
        target = staging / VARIANT_FILES[precision]
        quantize_int8(staging / "model.onnx", target, calibration)
        metrics, out = held_out_metric(name, target, data)
        fp32, value = fp32_metrics[gate.metric], metrics[gate.metric]
        entry: dict[str, Any] = {
            "method": f"{INT8_METHOD}, calibrated on {len(calibration)} training rows",
            "metric": gate.metric,
            "fp32": fp32,
            "value": value,
            "loss": gate.loss(fp32, value),
            "gate": gate.limit_for(len(data.x_test)),
            "gate_unit": gate.unit,
            "max_abs_deviation": float(np.max(np.abs(out.astype(np.float64) - fp32_out))),
            "samples": len(data.x_test),
        }
        if np.isfinite(out).all() and entry["loss"] <= entry["gate"] + 1e-9:
            entry.update(exported=True, file=target.name, sha256=sha256_file(target))
            log.info(
                "%s: %s variant exported (%s %.4f, fp32 %.4f)", name, precision, gate.metric, value, fp32
            )
        else:
            target.unlink()
            reason = (
                f"{gate.metric} {value:.4f} vs fp32 {fp32:.4f}: {entry['loss']:.2f} {gate.unit} worse, "
                f"over the gate of {entry['gate']:.2f} {gate.unit}"
            ) if np.isfinite(out).all() else "non-finite outputs on held-out inputs"  # fmt: skip
            entry.update(exported=False, reason=reason)
            log.warning("%s: %s variant not exported: %s", name, precision, reason)
        block[precision] = entry
    return block
