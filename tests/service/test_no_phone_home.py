"""The server does not phone home (``service/__init__.py``).

ONNX Runtime 1.32 looks up its telemetry collector (``mobile.events.data.microsoft.com``) some seconds
after a process's first inference and keeps a device id and an event store under
``~/.cache/Microsoft/DeveloperTools/.onnxruntime``, and BentoML reports usage to ``t.bentoml.com`` unless
``BENTOML_DO_NOT_TRACK`` is true. Real processes, no mocks: each ONNX Runtime case runs a real session
on a small model under ``strace`` and reads the DNS queries it sent. The control, with telemetry asked
for explicitly, shows that the lookup happens here and that the test would see it; the other process
imports ``service`` as every server process does and must send none.

ONNX Runtime turns its telemetry off by itself where it sees a CI runner's variables (``CI``,
``GITHUB_ACTIONS``, ``JENKINS_URL``, ...), and a proxy would carry the name in a CONNECT line instead of a
DNS query: both processes run without those variables, as a server in production does.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from service import VENDOR_TELEMETRY_OFF
from tests.service.modelfactory import write_scale_version

STRACE = shutil.which("strace")
COLLECTOR = b"\\6mobile\\6events\\4data"
"""How strace prints the start of the collector's name in a DNS query (length-prefixed labels)."""
STORE = b"Microsoft/DeveloperTools/.onnxruntime"
"""Where ONNX Runtime's telemetry keeps a device id and its offline event store (under ~/.cache)."""

CI_MARKERS = ("CI", "TF_BUILD", "GITHUB_ACTIONS", "GITLAB_CI", "CIRCLECI", "TRAVIS", "JENKINS_URL",
              "CODEBUILD_BUILD_ID", "BUILDKITE", "TEAMCITY_VERSION", "APPVEYOR", "BITBUCKET_BUILD_NUMBER",
              "ORT_RUNNING_UNIT_TESTS")  # fmt: skip
"""The variables by which ONNX Runtime 1.32 decides that it runs in CI and sends nothing (its binary's list)."""
PROXIES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")

SCRIPT = """
import sys, time
import numpy as np
import service  # what every server process imports first
import onnxruntime as ort
session = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
name = session.get_inputs()[0].name
rows = np.ones((1, 4), np.float32)
end = time.monotonic() + 1
while time.monotonic() < end:
    session.run(None, {name: rows})
time.sleep(60)  # the test stops it once the control's lookup was seen
"""


def _env(**extra: str) -> dict[str, str]:
    unset = {*VENDOR_TELEMETRY_OFF, *CI_MARKERS}
    env = {k: v for k, v in os.environ.items() if k not in unset and k.lower() not in PROXIES}
    return {**env, "PYTHONPATH": str(Path(__file__).resolve().parents[2]), **extra}


def _read(trace: Path) -> bytes:
    """What strace has written to ``trace`` so far (nothing before it made the file)."""
    return trace.read_bytes() if trace.exists() else b""


def test_onnx_runtime_sends_no_telemetry_lookup_once_service_is_imported(tmp_path: Path) -> None:
    assert STRACE, "strace is needed for this test (apt-get install strace; ./run.sh test installs it)"
    model = write_scale_version(tmp_path / "repo", "m", 1, 2.0) / "model.onnx"
    script = tmp_path / "infer.py"
    script.write_text(SCRIPT)
    traces = {case: tmp_path / f"{case}.strace" for case in ("control", "default")}
    home = {"HOME": str(tmp_path), "XDG_CACHE_HOME": str(tmp_path / "cache")}  # the control's store goes here
    envs = {"control": _env(ORT_DISABLE_TELEMETRY="0", **home), "default": _env(**home)}
    procs = {
        case: subprocess.Popen(
            [
                STRACE,
                "-f",
                "-s",
                "200",
                "-e",
                "trace=execve,openat,sendto,sendmmsg,sendmsg",
                "-o",
                str(trace),
                sys.executable,
                str(script),
                str(model),
            ],
            env=envs[case],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for case, trace in traces.items()
    }
    try:
        deadline = time.monotonic() + 45
        while COLLECTOR not in _read(traces["control"]):
            for case, proc in procs.items():
                assert proc.poll() is None, f"{case}: {proc.stderr.read().decode()[-2000:]}"  # type: ignore[union-attr]
            assert time.monotonic() < deadline, (
                "the control never looked up ONNX Runtime's collector in 45 s; it "
                + ("did" if STORE in _read(traces["control"]) else "did not")
                + " open the telemetry store"
            )
            time.sleep(0.25)
        time.sleep(2)  # the default process started at the same time: it had as long, and 2 s more
        for case, proc in procs.items():
            assert proc.poll() is None, f"{case} ended early"
    finally:
        for proc in procs.values():
            proc.kill()
            proc.wait()
    assert STORE in traces["control"].read_bytes()  # the control's telemetry opened its store
    sent = traces["default"].read_bytes()
    assert b"execve(" in sent, sent[:500]  # strace did trace it
    assert COLLECTOR not in sent, (
        "ONNX Runtime looked up its telemetry collector although service was imported"
    )
    assert STORE not in sent, "ONNX Runtime opened its telemetry store although service was imported"


def _do_not_track(**extra: str) -> str:
    code = (
        "import service\n"
        "from bentoml._internal.utils.analytics.usage_stats import do_not_track\n"
        "print(do_not_track())"
    )
    out = subprocess.run([sys.executable, "-c", code], env=_env(**extra), capture_output=True, text=True,
                         timeout=120)  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.strip()


def test_bentoml_usage_tracking_is_off_once_service_is_imported_unless_asked_for() -> None:
    assert _do_not_track() == "True"
    assert _do_not_track(BENTOML_DO_NOT_TRACK="false") == "False"  # the operator's choice is kept
