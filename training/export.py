"""Export a trained model as a new version of the model repository, atomically.

``<repo>/<name>/<version>/`` receives ``saved_model/`` (``model.export``), ``model.onnx`` (tf2onnx from
that SavedModel, then the exact rewrites of :mod:`training.onnx_graph`), ``model.keras``, the precision
variants that pass their gate (``model.int8.onnx``, :mod:`training.variants`) and ``metadata.json`` (validated against :class:`service.schema.ModelMetadata`). Everything is written into
``<repo>/.staging-<uuid>/`` (a dot directory the server ignores), checked (ONNX Runtime vs the SavedModel
signature and vs the reloaded ``.keras`` model), then renamed to the next free version number. Any failure
removes the staging directory, so no partial version ever appears.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import platform
import shutil
import sys
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import keras
import numpy as np

from service.schema import ModelMetadata
from training.cards import Card
from training.onnx_graph import simplify

PARITY_TOLERANCE = 1e-5
ONNX_OPSET = 17
_ORT_DTYPES = {
    "tensor(float)": "float32",
    "tensor(double)": "float64",
    "tensor(int32)": "int32",
    "tensor(int64)": "int64",
}


class ExportError(RuntimeError):
    """The model cannot be exported (conversion failed, formats disagree, repository unusable)."""


class ParityError(ExportError):
    """Two formats of the same model give different outputs."""


def check_parity(
    reference: np.ndarray, candidate: np.ndarray, tolerance: float = PARITY_TOLERANCE, what: str = "outputs"
) -> float:
    """Max absolute difference between two output arrays; raises :class:`ParityError` above ``tolerance``.

    Shape mismatches and non-finite values fail too (a NaN never compares as "close").
    """
    reference, candidate = np.asarray(reference, np.float64), np.asarray(candidate, np.float64)
    if reference.shape != candidate.shape:
        raise ParityError(f"{what}: shapes differ, {reference.shape} vs {candidate.shape}")
    if not (np.isfinite(reference).all() and np.isfinite(candidate).all()):
        raise ParityError(f"{what}: non-finite values in the outputs")
    diff = float(np.max(np.abs(reference - candidate))) if reference.size else 0.0
    if diff > tolerance:
        raise ParityError(f"{what}: max abs difference {diff:.3g} exceeds tolerance {tolerance:g}")
    return diff


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def shortest_floats(array: np.ndarray) -> list[Any]:
    """Nested list of the float32 values as their shortest decimal text (30.2, not 30.200000762939453)."""
    return array.astype(np.float32).astype(str).astype(np.float64).tolist()


def artifact_digests(root: Path) -> dict[str, str]:
    """``relative/posix/path -> sha256`` for every file under ``root`` except ``metadata.json``."""
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.name != "metadata.json")
    return {p.relative_to(root).as_posix(): sha256_file(p) for p in files}


def ensure_writable(repo: Path) -> Path:
    """Create ``repo`` if needed and prove it is writable; raise :class:`ExportError` otherwise."""
    try:
        repo.mkdir(parents=True, exist_ok=True)
        probe = repo / f".write-test-{uuid.uuid4().hex}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ExportError(f"model repository {repo} is not writable: {exc.strerror or exc}") from exc
    return repo


def existing_versions(model_dir: Path) -> list[int]:
    """Version numbers present under ``model_dir`` (positive integer directory names)."""
    if not model_dir.is_dir():
        return []
    return sorted(
        int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit() and int(p.name) > 0
    )


def convert_to_onnx(saved_model: Path, output: Path, opset: int = ONNX_OPSET) -> None:
    """tf2onnx's ``--saved-model`` conversion, as a function (``from_keras`` fails on Keras 3)."""
    import tensorflow as tf
    from tf2onnx import convert, tf_loader

    logging.getLogger("tf2onnx").setLevel(logging.ERROR)
    graph_def, inputs, outputs, tables, renames = tf_loader.from_saved_model(
        str(saved_model), None, None, tag="serve", signatures=["serving_default"],
        return_initialized_tables=True, return_tensors_to_rename=True,
    )  # fmt: skip
    with tf.device("/cpu:0"):
        convert._convert_common(
            graph_def, name=saved_model.name, opset=opset, input_names=inputs, output_names=outputs,
            tensors_to_rename=renames, initialized_tables=tables, output_path=str(output),
        )  # fmt: skip


def _specs(nodes: list[Any]) -> list[dict[str, Any]]:
    return [
        {
            "name": n.name,
            "dtype": _ORT_DTYPES[n.type],
            "shape": [d if isinstance(d, int) else -1 for d in n.shape],
        }
        for n in nodes
    ]


def _check_formats(
    staging: Path, inputs: np.ndarray, tolerance: float
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run all three formats on ``inputs``; return the parity block and the tensor names."""
    import onnxruntime as ort
    import tensorflow as tf

    session = ort.InferenceSession(str(staging / "model.onnx"), providers=["CPUExecutionProvider"])
    onnx_in, onnx_out = _specs(session.get_inputs()), _specs(session.get_outputs())
    if len(onnx_in) != 1 or len(onnx_out) != 1:
        raise ExportError(f"expected one input and one output, ONNX graph has {onnx_in} -> {onnx_out}")
    onnx_result = session.run(None, {onnx_in[0]["name"]: inputs})[0]

    signature = tf.saved_model.load(str(staging / "saved_model")).signatures["serving_default"]
    sig_in = list(signature.structured_input_signature[1])
    sig_out = list(signature.structured_outputs)
    tf_result = signature(**{sig_in[0]: tf.constant(inputs)})[sig_out[0]].numpy()
    reloaded = keras.saving.load_model(staging / "model.keras", compile=False)
    keras_result = np.asarray(reloaded.predict(inputs, batch_size=256, verbose=0))

    parity = {
        "samples": len(inputs),
        "tolerance": tolerance,
        "onnx_vs_saved_model": check_parity(tf_result, onnx_result, tolerance, "ONNX vs SavedModel"),
        "onnx_vs_keras": check_parity(keras_result, onnx_result, tolerance, "ONNX vs .keras"),
        "passed": True,
    }
    names: dict[str, Any] = {"inputs": onnx_in, "outputs": onnx_out}
    if [sig_in[0], sig_out[0]] != [onnx_in[0]["name"], onnx_out[0]["name"]]:
        names["saved_model_signature"] = {
            "inputs": {onnx_in[0]["name"]: sig_in[0]},
            "outputs": {onnx_out[0]["name"]: sig_out[0]},
        }
    return parity, names


def framework_versions() -> dict[str, str]:
    import onnx
    import onnxruntime
    import tensorflow as tf
    import tf2onnx

    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "keras_backend": keras.backend.backend(),
        "tf2onnx": tf2onnx.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
    }


def _publish(staging: Path, model_dir: Path, metadata: dict[str, Any]) -> dict[str, Any]:
    """Write metadata.json with the next free version and rename staging there; retry on a race."""
    model_dir.mkdir(parents=True, exist_ok=True)
    version = 0
    for _ in range(1000):
        version = max(max(existing_versions(model_dir), default=0), version) + 1
        metadata["version"] = version
        document = ModelMetadata.model_validate(metadata).model_dump(mode="json")
        (staging / "metadata.json").write_text(json.dumps(document, indent=2) + "\n")
        try:
            os.rename(staging, model_dir / str(version))
        except OSError as exc:
            if exc.errno in (errno.EEXIST, errno.ENOTEMPTY):
                continue  # another exporter took this number first: take the next one
            raise
        return document
    raise ExportError(f"no free version number under {model_dir}")


def export(
    model: keras.Model,
    repo: str | os.PathLike[str],
    *,
    name: str,
    card: Card,
    metrics: dict[str, float],
    dataset: dict[str, Any],
    training_seconds: float,
    extra: dict[str, Any] | None = None,
    tolerance: float = PARITY_TOLERANCE,
    variants: Callable[[Path], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Write ``model`` as the next version of ``<repo>/<name>`` and return its metadata (as written).

    ``variants`` (see :func:`training.variants.build_variants`) is called with the staging directory once
    ``model.onnx`` passed parity; it writes its files there and returns the ``variants`` block."""
    root = ensure_writable(Path(repo))
    staging = root / f".staging-{uuid.uuid4().hex}"
    try:
        staging.mkdir()
        with contextlib.redirect_stdout(sys.stderr):  # TF/Keras chatter never pollutes stdout
            model.export(str(staging / "saved_model"), format="tf_saved_model", verbose=False)
            model.save(staging / "model.keras")
            convert_to_onnx(staging / "saved_model", staging / "model.onnx")
            rewrites = simplify(staging / "model.onnx")
            parity, names = _check_formats(staging, card.parity_inputs, tolerance)
            variant_block = variants(staging) if variants is not None else {}
        metadata: dict[str, Any] = {
            "name": name,
            "version": 1,
            "created": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
            **names,
            "labels": card.labels,
            "input_contract": card.input_contract,
            "example": {names["inputs"][0]["name"]: shortest_floats(card.example)},
            "metrics": {k: float(v) for k, v in metrics.items()},
            "dataset": dataset,
            "training_seconds": float(training_seconds),
            "framework_versions": framework_versions(),
            "artifacts": artifact_digests(staging),
            "parity": parity,
            "parity_inputs": card.parity_note,
            "onnx_opset": ONNX_OPSET,
            "onnx_rewrites": rewrites,
            "variants": variant_block,
            **(extra or {}),
        }
        return _publish(staging, root / name, metadata)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
