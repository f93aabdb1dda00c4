"""Capture and feedback end to end: a real server with two workers over really trained models.

Real held-out rows (scikit-learn's diabetes data for the ``mlp`` classifier, statsmodels' El Niño series
for the ``rnn`` regressor) are sent with ``X-Request-Id``, each on a new connection so both workers
answer; the true labels and values go back through ``POST /v1/feedback`` in two calls. The accuracy
and mean absolute error the server reports (answers and ``/metrics``) must be the ones computed here
from its answers; every prediction was matched whichever worker answered it (the capture files show
that both did). After shutdown the capture files are closed and hold exactly what was answered.
"""

from __future__ import annotations

import shutil
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
import requests

from service.ops.capture import CLOSED_SUFFIX
from service.ops.feedback import STORE_FILE
from tests.server import Server
from tests.service.ops.test_feedback import wait_for_rows
from training.data import load_diabetes, load_elnino

pytestmark = pytest.mark.e2e
N_MLP, N_RNN = 40, 10


def eventually(check: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def predict(server: Server, model: str, rid: str, row: np.ndarray) -> dict[str, Any]:
    r = requests.post(server.url + "/v1/predict", json={"model": model, "inputs": [row.tolist()]},
                      headers={"X-Request-Id": rid}, timeout=30)  # fmt: skip
    assert r.status_code == 200 and r.headers["x-request-id"] == rid, r.text
    return r.json()


def feedback(server: Server, model: str, items: list[dict[str, Any]]) -> dict[str, Any]:
    r = requests.post(server.url + "/v1/feedback", json={"model": model, "feedback": items}, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def test_capture_and_feedback_across_two_workers(trained_repo: Path, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    for name in ("mlp", "rnn"):
        shutil.copytree(trained_repo / name, repo / name)
    policy = "{capture: {percent: 100}, feedback: {enabled: true}}"
    (repo / "serving.yaml").write_text(f"models:\n  mlp: {policy}\n  rnn: {policy}\n")
    capture, state = tmp_path / "capture", tmp_path / "state"
    diabetes, elnino = load_diabetes(seed=0), load_elnino()
    x_mlp, y_mlp = diabetes.x_test[:N_MLP], diabetes.y_test[:N_MLP, 0].astype(int)
    x_rnn, y_rnn = elnino.x_test[:N_RNN], elnino.y_test[:N_RNN, 0]
    sent: dict[str, tuple[np.ndarray, dict[str, Any]]] = {}
    with Server(repo, tmp_path / "server.log", workers=2, SERVING_CAPTURE_DIR=str(capture),
                SERVING_STATE_DIR=str(state)) as server:  # fmt: skip
        classes = requests.get(server.url + "/v1/models", timeout=10).json()
        labels = next(m for m in classes["models"] if m["name"] == "mlp")["versions"][0]["class_labels"]
        for i, row in enumerate(x_mlp):
            sent[f"mlp-{i}"] = (row, predict(server, "mlp", f"mlp-{i}", row))
        for i, row in enumerate(x_rnn):
            sent[f"rnn-{i}"] = (row, predict(server, "rnn", f"rnn-{i}", row))
        predicted = np.array([sent[f"mlp-{i}"][1]["outputs"]["output_0"][0][0] >= 0.5 for i in range(N_MLP)])
        correct = int((predicted.astype(int) == y_mlp).sum())
        assert 0 < correct < N_MLP, "a quick-trained model gets some right and some wrong"
        forecast = np.array([sent[f"rnn-{i}"][1]["outputs"]["output_0"][0][0] for i in range(N_RNN)])
        mae = float(np.abs(forecast - y_rnn).mean())
        wait_for_rows(state / STORE_FILE, N_MLP + N_RNN)  # the writer threads store off the request path

        items = [
            {"request_id": f"mlp-{i}", "label": labels[y] if i % 2 else int(y)} for i, y in enumerate(y_mlp)
        ]
        first = feedback(server, "mlp", items[: N_MLP // 2])
        second = feedback(server, "mlp", [*items[N_MLP // 2 :], {"request_id": "never-sent", "label": 0},
                                          {"request_id": "rnn-0", "label": 1}, items[0]])  # fmt: skip
        results = first["results"] + second["results"]
        assert [r["status"] for r in results] == ["matched"] * N_MLP + ["unknown", "wrong_model", "duplicate"]
        assert sum(r["correct"] for r in results[:N_MLP]) == correct
        assert second["windows"] == [
            {"version": 1, "rows": N_MLP, "accuracy": pytest.approx(correct / N_MLP)}
        ]
        regressed = feedback(
            server, "rnn", [{"request_id": f"rnn-{i}", "value": float(y)} for i, y in enumerate(y_rnn)]
        )
        assert regressed["windows"][0]["mean_abs_error"] == pytest.approx(mae, rel=1e-5)

        assert server.metric("serving_feedback_accuracy", model="mlp", version="1") == pytest.approx(
            correct / N_MLP
        )
        assert server.metric("serving_feedback_total", model="mlp", version="1", result="correct") == correct
        assert (
            server.metric("serving_feedback_total", model="mlp", version="1", result="wrong")
            == N_MLP - correct
        )
        assert server.metric("serving_feedback_total", model="mlp", version="", result="unknown") == 1
        assert server.metric("serving_feedback_mean_abs_error", model="rnn", version="1") == pytest.approx(
            mae, rel=1e-5
        )
        assert server.metric("serving_feedback_abs_error_count", model="rnn", version="1") == N_RNN
        eventually(lambda: server.metric("serving_capture_written_total") == N_MLP + N_RNN)
        assert server.metric("serving_capture_dropped_total") == 0

    files = sorted(capture.glob("capture-*"))
    assert files and all(f.name.endswith(CLOSED_SUFFIX) for f in files), "every file closed at shutdown"
    assert len({f.name.split("-")[-3] for f in files}) == 2, "both workers answered (one file set per pid)"
    records = {r["request_id"]: r for f in files for r in map(orjson.loads, f.read_bytes().splitlines())}
    assert set(records) == set(sent)
    for rid, (row, answer) in sent.items():
        record = records[rid]
        assert (record["model"], record["version"], record["protocol"]) == (answer["model"], 1, "native")
        assert record["outputs"] == answer["outputs"]
        (values,) = record["inputs"].values()
        assert np.array_equal(np.asarray(values, np.float32), row[None].astype(np.float32))
    with sqlite3.connect(state / STORE_FILE) as db:
        assert (
            db.execute("SELECT count(*) FROM predictions WHERE feedback IS NOT NULL").fetchone()[0]
            == N_MLP + N_RNN
        )
