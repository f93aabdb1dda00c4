"""The Keras-on-JAX runtime's fixed batch buckets: compiled at load, never again for any batch size.

The runtime runs in a subprocess with ``KERAS_BACKEND=jax`` (Keras fixes its backend at first import, and
other tests in this process import it on TensorFlow). There, JAX's own compile events
(``/jax/core/compile/backend_compile_duration``, one per XLA compilation) and ``jax.jit``'s cache size are
counted around loading and around a predict of every batch size from 1 to the model's max batch size, and
the answers are compared with ONNX Runtime on the same version's ``model.onnx``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from service.runtimes.keras import BUCKETS, batch_buckets, bucket_for
from tests.conftest import ROOT

MAX_BATCH = 24
SCRIPT = """
import json, sys
from pathlib import Path
import jax, numpy as np
from service.runtimes.keras import KerasRuntime
from service.runtimes.onnx import OnnxRuntime
from service.schema import ModelMetadata

directory, max_batch = Path(sys.argv[1]), int(sys.argv[2])
metadata = ModelMetadata.model_validate_json((directory / "metadata.json").read_bytes())
compiles = []
jax.monitoring.register_event_duration_secs_listener(
    lambda event, seconds, **_: compiles.append(event) if event == "/jax/core/compile/backend_compile_duration" else None
)
runtime = KerasRuntime(directory, metadata, max_batch_size=max_batch)
runtime.load()
at_load = (len(compiles), runtime.compiled_shapes)
reference = OnnxRuntime(directory, metadata, ["CPUExecutionProvider"], threads=1)
reference.load()
(spec,) = metadata.inputs
rng = np.random.default_rng(0)
diffs, shapes = [], []
for rows in [*range(1, max_batch + 1), 2 * max_batch + 3]:
    x = rng.integers(0, 256, size=(rows, *spec.shape[1:])).astype(np.float32)
    got = runtime.predict({spec.name: x})
    want = reference.predict({spec.name: x})
    name = metadata.outputs[0].name
    shapes.append(list(got[name].shape))
    diffs.append(float(np.abs(got[name] - want[name]).max()))
print(json.dumps({"at_load": at_load, "after": (len(compiles), runtime.compiled_shapes),
                  "buckets": runtime.buckets, "provider": runtime.provider, "diffs": diffs, "shapes": shapes}))
"""


def test_buckets_are_the_fixed_list_cut_at_the_max_batch_size() -> None:
    assert batch_buckets(64) == [1, 2, 4, 8, 16, 32, 64]
    assert batch_buckets(24) == [1, 2, 4, 8, 16, 24]
    assert batch_buckets(1) == [1]
    assert batch_buckets(8192) == list(BUCKETS[: BUCKETS.index(8192) + 1])
    assert [bucket_for(n, batch_buckets(24)) for n in (1, 3, 16, 17, 24, 99)] == [1, 4, 16, 24, 24, 24]
    with pytest.raises(ValueError, match="at least 1"):
        batch_buckets(0)


@pytest.mark.timeout(180)
def test_no_compilation_after_load_for_any_batch_size(trained_repo: Path) -> None:
    directory = trained_repo / "cnn" / "1"
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(directory), str(MAX_BATCH)],
        capture_output=True, text=True, timeout=170, cwd=ROOT, env=env,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    buckets = batch_buckets(MAX_BATCH)
    assert result["buckets"] == buckets
    compiled_at_load, cached_at_load = result["at_load"]
    assert cached_at_load == len(buckets)  # one program per bucket ...
    assert compiled_at_load >= len(buckets)  # ... each compiled while loading
    assert result["after"] == [compiled_at_load, cached_at_load]  # 1..24 rows and 51 (chunked): no compile
    rows = [*range(1, MAX_BATCH + 1), 2 * MAX_BATCH + 3]
    assert result["shapes"] == [[n, 10] for n in rows]
    assert max(result["diffs"]) <= 1e-5, result["diffs"]
    assert result["provider"] == "CPU:0"
