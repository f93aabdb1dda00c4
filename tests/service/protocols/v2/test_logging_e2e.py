"""Triton's logging extension against a real two-worker server, through tritonclient over HTTP and gRPC:
a change made through either worker holds in both (each answer, from whichever worker, says so, and both
workers write what it asks for), the request log names every answer with its status and error, a
worker restarted after a crash starts with the changed settings, and wrong changes are 400s that leave
the settings as they were."""

from __future__ import annotations

import os
import re
import signal
import time
from typing import Any

import numpy as np
import pytest
import requests
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from tests.server import Server
from tests.service.bento.test_grpc_lifecycle_e2e import workers

pytestmark = pytest.mark.e2e
DEFAULTS = {
    "log_file": "",
    "log_info": True,
    "log_warning": True,
    "log_error": True,
    "log_verbose_level": 0,
    "log_format": "ISO8601",
}
REQUEST_LINE = re.compile(
    r"\[DEBUG\] \[[^\]]*:(\d+)\] (HTTP|gRPC) (\S+(?: \S+)?) (\S+) [\d.]+ ms request_id=(\S+)(.*)"
)
"""A request log line: worker id, transport, what (method and path, or gRPC method), status, request id, rest."""


def full_log(server: Server) -> str:
    return server.log_path.read_text(errors="replace")


def request_lines(server: Server, since: int = 0) -> list[tuple[str, ...]]:
    return [m.groups() for m in REQUEST_LINE.finditer(full_log(server)[since:])]


def predict(server: Server, inputs: list[list[float]]) -> requests.Response:
    """One request on a new connection (the kernel spreads new connections over both workers)."""
    return requests.post(server.url + "/v1/predict", json={"model": "m", "inputs": inputs}, timeout=10)


def test_a_change_through_one_worker_holds_in_both(server: Server) -> None:
    http = httpclient.InferenceServerClient(server.url.removeprefix("http://"))
    rpc = grpcclient.InferenceServerClient(server.v2_grpc)
    assert http.get_log_settings() == DEFAULTS
    assert "logging" in http.get_server_metadata()["extensions"]
    since = len(full_log(server))
    assert http.update_log_settings({"log_verbose_level": 1}) == {**DEFAULTS, "log_verbose_level": 1}
    for _ in range(6):  # new connections: either worker answers, each with the server's settings
        assert requests.get(server.url + "/v2/logging", timeout=10).json()["log_verbose_level"] == 1
    assert rpc.get_log_settings(as_json=True)["settings"]["log_verbose_level"] == {"uint32_param": 1}

    def both_workers_log_requests() -> bool:
        assert predict(server, [[1, 2, 3, 4]]).ok
        return {
            w for w, t, what, status, *_ in request_lines(server, since) if what == "POST /v1/predict"
        } == {
            "1",
            "2",
        }

    server.wait_for("request lines from both workers", both_workers_log_requests)
    assert predict(server, [[1, 2]]).status_code == 400
    inp = grpcclient.InferInput("x", [1, 4], "FP32")
    inp.set_data_from_numpy(np.ones((1, 4), np.float32))
    answer = rpc.infer("m", [inp])
    server.wait_for("a gRPC line", lambda: any(line[1] == "gRPC" for line in request_lines(server, since)))
    lines = request_lines(server, since)
    answered = [line for line in lines if line[2] == "POST /v1/predict" and line[3] == "200"]
    assert answered and all(rest == " model=m version=2" for *_, rest in answered), answered
    refused = [line for line in lines if line[3] == "400"]
    assert len(refused) == 1 and refused[0][5].startswith(" model=m version=2: input 'x': expected shape")
    infer = [line for line in lines if line[1] == "gRPC" and line[2] == "ModelInfer"]
    assert len(infer) == 1 and infer[0][3] == "OK" and infer[0][5] == " model=m version=2"
    assert infer[0][4] == answer.get_response().id  # the id the server gave the request

    # back off through gRPC: neither worker writes request lines any more
    assert rpc.update_log_settings({"log_verbose_level": 0}, as_json=True)["settings"][
        "log_verbose_level"
    ] == {"uint32_param": 0}
    time.sleep(2.0)  # each worker looks at the shared file every 0.5 s (four looks, for a busy machine)
    quiet_from = len(full_log(server))
    for _ in range(8):
        assert predict(server, [[1, 2, 3, 4]]).ok
    time.sleep(0.3)
    assert request_lines(server, quiet_from) == []


def test_a_worker_restarted_after_a_crash_starts_with_the_changed_settings(server: Server) -> None:
    http = httpclient.InferenceServerClient(server.url.removeprefix("http://"))
    assert http.update_log_settings({"log_info": False, "log_verbose_level": 1})["log_info"] is False
    time.sleep(1.0)  # both workers follow
    before = {p.pid for p in workers(server)}
    prefixes_before = {line[4].rsplit("-", 1)[0] for line in request_lines(server)}
    since = len(full_log(server))
    os.kill(next(iter(before)), signal.SIGKILL)
    server.wait_for(
        "the restarted worker",
        lambda: len(now := workers(server)) == 2 and not before >= {p.pid for p in now},
        60.0,
    )

    def new_worker_logs_requests() -> bool:
        assert predict(server, [[1, 2, 3, 4]]).ok
        prefixes = {line[4].rsplit("-", 1)[0] for line in request_lines(server, since)}
        return bool(prefixes - prefixes_before)  # a request id of the new process: it writes debug lines

    server.wait_for("request lines from the restarted worker", new_worker_logs_requests, 30.0)
    written = full_log(server)[since:]
    assert "worker restarted: loading the models before listening" not in written  # INFO: off there too
    assert requests.get(server.url + "/v2/logging", timeout=10).json()["log_info"] is False
    assert http.update_log_settings({"log_info": None, "log_verbose_level": None}) == DEFAULTS
    server.wait_for("the change's INFO line", lambda: "log settings changed: {" in full_log(server)[since:])


@pytest.mark.parametrize(
    ("changes", "message", "over_grpc"),
    [
        ({"log_file": "/tmp/x.log"}, "log_file is fixed at '' on this server", True),
        ({"nope": True}, "unknown log setting 'nope'", True),
        # tritonclient's gRPC client cannot send these (a uint32 field; any log_info value becomes a bool)
        (
            {"log_verbose_level": -1},
            "log_verbose_level must be an integer from 0 to 4294967295, got -1",
            False,
        ),
        ({"log_info": "false"}, "log_info must be true or false, got 'false'", False),
    ],
)
def test_a_wrong_change_is_refused_on_both_transports_and_changes_nothing(
    server: Server, changes: dict[str, Any], message: str, over_grpc: bool
) -> None:
    http = httpclient.InferenceServerClient(server.url.removeprefix("http://"))
    rpc = grpcclient.InferenceServerClient(server.v2_grpc)
    answer = requests.post(server.url + "/v2/logging", json=changes, timeout=10)
    assert answer.status_code == 400 and message in answer.json()["error"]
    if over_grpc:
        with pytest.raises(InferenceServerException, match=re.escape(message)) as refused:
            rpc.update_log_settings(changes)
        assert refused.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert http.get_log_settings() == DEFAULTS
    assert requests.post(server.url + "/v2/logging", data=b"[1]", timeout=10).json() == {
        "error": "the body must be a JSON object of log settings, got list"
    }
    assert predict(server, [[1, 2, 3, 4]]).ok
