"""Small real ONNX models written straight into a repository, for fast tests of the server.

``y = x * scale`` on float32 ``[N, 4]``: each version uses a different scale, so a test can tell
from the outputs which version answered. The files are real ONNX graphs run by ONNX Runtime; only
the training step is skipped (the training pipeline has its own tests, and e2e tests use its models).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

from bench.synthetic import write_onnx_version


def _scale_model(scale: float, shape: list[int]) -> bytes:
    dims = [None if d < 0 else d for d in shape]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, dims)
    k = helper.make_tensor("k", TensorProto.FLOAT, [1], [scale])
    graph = helper.make_graph([helper.make_node("Mul", ["x", "k"], ["y"])], "scale", [x], [y], [k])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def write_scale_version(
    repo: Path,
    name: str,
    version: int,
    scale: float,
    declared_width: int = 4,
    shape: list[int] | None = None,
    labels: list[str] | None = None,
) -> Path:
    """Write ``repo/name/version`` atomically (staging dir + rename), like the exporter does.

    ``declared_width`` is the width metadata.json claims; -1 lets wrong widths through validation,
    so the runtime itself fails (how a test provokes a 500). ``shape`` replaces the whole input
    shape (e.g. ``[-1, 28, 28, 1]`` for an image-shaped model).
    """
    shape = shape or [-1, 4]
    declared = shape if declared_width == 4 else [-1, declared_width]
    example = np.zeros([1, *shape[1:]], np.float32) + 1.0
    return write_onnx_version(
        repo,
        name,
        version,
        _scale_model(scale, shape),
        inputs=[{"name": "x", "dtype": "float32", "shape": declared}],
        outputs=[{"name": "y", "dtype": "float32", "shape": shape}],
        labels=labels,
        example={"x": example.tolist()},
        metrics={"scale": scale},
    )


def copy_version(source: Path, repo: Path, name: str, version: int) -> Path:
    """The version folder ``source`` (a trained model's) copied as ``repo/name/version``, its
    ``metadata.json`` naming that version (the same trained model served as several versions)."""
    target = repo / name / str(version)
    shutil.copytree(source, target)
    meta = json.loads((target / "metadata.json").read_text())
    (target / "metadata.json").write_text(json.dumps({**meta, "version": version}))
    return target


def remove_version(repo: Path, name: str, version: int) -> None:
    shutil.rmtree(repo / name / str(version))


def write_demo_repo(repo: Path, *, broken: str = "corrupt", extra_policy: str = "") -> Path:
    """The protocol tests' repository: model ``m`` with versions 1 (×1) and 2 (×2), both served, labels
    ``stable`` → 1 and ``canary`` → 2; model ``broken`` whose ``model.onnx`` is ``corrupt`` or ``missing``.
    ``extra_policy`` adds YAML lines to ``m``'s policy (indented by four spaces)."""
    write_scale_version(repo, "m", 1, 1.0)
    write_scale_version(repo, "m", 2, 2.0)
    onnx_file = write_scale_version(repo, "broken", 1, 1.0) / "model.onnx"
    if broken == "missing":
        onnx_file.unlink()
    else:
        onnx_file.write_bytes(b"xx")
    policy = "models:\n  m:\n    policy: all\n    labels: {stable: 1, canary: 2}\n" + extra_policy
    (repo / "serving.yaml").write_text(policy)
    return repo
