"""The default (ONNX) server never imports TensorFlow, not even for the TF Serving gRPC protos."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.service.modelfactory import write_scale_version

SCRIPT = """
import asyncio, sys
from pathlib import Path
import service.service  # the BentoML service module, as the worker imports it
from service.protocols.tfserving.protos import tfserving_protos
from service.models.registry import ModelRegistry
from service.settings import Settings

async def main():
    registry = ModelRegistry(Settings(repository=Path(sys.argv[1]), poll_interval_s=0))
    await registry.start()
    assert registry.ready()
    await registry.close()

asyncio.run(main())
pb = tfserving_protos()
assert pb.predict_pb2.PredictRequest().model_spec.name == ""
print("tensorflow" in sys.modules, "keras" in sys.modules)
"""


def test_onnx_server_does_not_import_tensorflow(tmp_path: Path) -> None:
    write_scale_version(tmp_path, "m", 1, 1.0)
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["False", "False"]
