"""Virtual environments for the peer servers and tools, created under ``bench/.venvs/`` on first use.

The peers never go into the project's venv: MLServer and PyTriton pin versions of shared packages
(uvicorn, protobuf, grpcio …) that would fight with BentoML's. Each venv is built from PyPI with the
project interpreter's base Python and marked with a stamp of its requirements, so a later run reuses it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from bench.config import VENVS

try:  # the same ONNX Runtime everywhere, so only the serving stack differs
    from importlib.metadata import version as _version

    ORT = f"onnxruntime=={_version('onnxruntime')}"
except Exception:  # pragma: no cover - onnxruntime is a project dependency
    ORT = "onnxruntime"

REQUIREMENTS: dict[str, list[str]] = {
    # uvloop 0.23 breaks MLServer's inference worker ("There is no current event loop").
    "mlserver": ["mlserver==1.7.1", "uvloop==0.21.0", ORT],
    "pytriton": ["nvidia-pytriton==0.7.0", ORT],
    "tools": ["py-spy"],
}


class Unavailable(RuntimeError):
    """A peer (or tool) cannot be used here; the message says why and goes into the report."""


def base_python() -> str:
    """The interpreter the project venv was made from (``sys.executable`` when not in a venv)."""
    return getattr(sys, "_base_executable", None) or sys.executable


def ensure(name: str, log: object = print, timeout_s: float = 900.0) -> Path:
    """The ``bin/`` folder of venv ``name``, installing it first if needed; :class:`Unavailable` on failure."""
    venv = VENVS / name
    stamp = venv / ".bench-requirements"
    wanted = "\n".join(REQUIREMENTS[name])
    if stamp.is_file() and stamp.read_text() == wanted and (venv / "bin" / "python").exists():
        return venv / "bin"
    log(f"creating {venv} ({', '.join(REQUIREMENTS[name])}) …")  # type: ignore[operator]
    VENVS.mkdir(parents=True, exist_ok=True)
    steps = [
        [base_python(), "-m", "venv", "--clear", str(venv)],
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--upgrade", "pip"],
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", *REQUIREMENTS[name]],
    ]
    for cmd in steps:
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise Unavailable(f"installing {name} failed: {e}") from e
        if out.returncode != 0:
            errors = [ln for ln in out.stderr.splitlines() if not ln.startswith("WARNING: Location")]
            raise Unavailable(f"installing {name} failed ({' '.join(cmd[-3:])}): {' '.join(errors)[-600:]}")
    stamp.write_text(wanted)
    return venv / "bin"


def libdir(python: Path) -> str:
    """The lib folder of ``python``'s installation (PyTriton's helper links libpython from there)."""
    cmd = [str(python), "-c", "import sysconfig; print(sysconfig.get_config_var('LIBDIR'))"]
    return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip()
