"""TensorFlow's protobuf modules without TensorFlow, for the serving image (stdlib only; run by deploy/Dockerfile).

``tensorflow-serving-api``'s generated modules import ``tensorflow.core.framework.tensor_pb2`` and a few
more, which only the TensorFlow wheel ships. ``extract`` copies every ``tensorflow/**/*_pb2*.py`` out of
that wheel (768 KB of a ~600 MB wheel) into ``DEST/tensorflow/`` and writes a ``tensorflow/__init__.py``
that refuses ``import tensorflow`` with a message saying what to install.
``service/protocols/tfserving/protos.py`` loads the protobuf modules without running that file.

    python3 deploy/tfprotos.py pin tensorflow          # the requirement pyproject.toml pins, for pip
    python3 deploy/tfprotos.py requires jax            # the project's requirements with these extras
    python3 deploy/tfprotos.py extract WHEEL DEST      # DEST = the venv's site-packages

``requires`` lets the Dockerfile install the dependencies in a layer of their own, before the code is
copied in: a change to the code then rebuilds only the project's own small layers.
"""

from __future__ import annotations

import re
import sys
import tomllib
import zipfile
from pathlib import Path
from typing import Any

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"
PROTO_MODULE = re.compile(r"^tensorflow/(?:[\w]+/)*[\w]+_pb2(?:_grpc)?\.py$")
REFUSAL = (
    "TensorFlow is not installed in this image (it has only TensorFlow's protobuf modules, for the TF Serving "
    "API): use the training image, or pip install 'keras-serving[tensorflow]'"
)
STUB = f'''"""Not TensorFlow: only its protobuf modules, for the TF Serving API (see deploy/tfprotos.py)."""

raise ImportError({REFUSAL!r})
'''


def _project(pyproject: Path) -> dict[str, Any]:
    """The ``[project]`` table of ``pyproject``."""
    return tomllib.loads(pyproject.read_text())["project"]


def pin(name: str, pyproject: Path = PYPROJECT) -> str:
    """The requirement string for ``name`` from the project's dependencies or any of its extras."""
    project = _project(pyproject)
    groups = [project["dependencies"], *project.get("optional-dependencies", {}).values()]
    for requirement in (r for group in groups for r in group):
        if re.split(r"[\[<>=!~; ]", requirement, maxsplit=1)[0] == name:
            return str(requirement)
    raise SystemExit(f"{name} is not a requirement in {pyproject}")


def requires(extras: list[str], pyproject: Path = PYPROJECT) -> list[str]:
    """The project's requirements with those of ``extras``, without repeats (an extra that names the
    project itself, as ``keras-serving[tensorflow]`` does, brings that extra's requirements too)."""
    project = _project(pyproject)
    optional = project.get("optional-dependencies", {})
    own = re.compile(rf"^{re.escape(project['name'])}\[([\w,\s-]+)\]$")
    found: list[str] = []
    pending, seen = list(reversed(extras)), set()

    def add(requirement: str) -> None:
        inner = own.match(requirement.strip())
        if inner:
            pending.extend(reversed([e.strip() for e in inner.group(1).split(",")]))
        elif requirement not in found:
            found.append(requirement)

    for requirement in project["dependencies"]:
        add(requirement)
    while pending:
        extra = pending.pop()
        if extra in seen:
            continue
        if extra not in optional:
            raise SystemExit(f"{extra!r} is not an extra of {pyproject} (extras: {', '.join(optional)})")
        seen.add(extra)
        for requirement in optional[extra]:
            add(requirement)
    return found


def extract(wheel: Path, dest: Path) -> list[str]:
    """Copy the protobuf modules of a TensorFlow wheel under ``dest/tensorflow``; returns their paths."""
    with zipfile.ZipFile(wheel) as archive:
        names = sorted(n for n in archive.namelist() if PROTO_MODULE.match(n))
        if not any(n.endswith("core/framework/tensor_pb2.py") for n in names):
            raise SystemExit(
                f"{wheel} has no tensorflow/core/framework/tensor_pb2.py: not a TensorFlow wheel"
            )
        for name in names:
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(archive.read(name))
    (dest / "tensorflow" / "__init__.py").write_text(STUB)
    return names


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "pin":
        print(pin(argv[1]))
        return 0
    if argv and argv[0] == "requires":
        print("\n".join(requires(argv[1:])))
        return 0
    if len(argv) == 3 and argv[0] == "extract":
        names = extract(Path(argv[1]), Path(argv[2]))
        print(f"{len(names)} protobuf modules of TensorFlow extracted to {argv[2]}", file=sys.stderr)
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
