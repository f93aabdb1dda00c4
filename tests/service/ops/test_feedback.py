"""Feedback: the shared SQLite store (two instances on one file = two workers), predictions and scoring,
window figures, and the feature through a real data plane with the process's real Prometheus metrics."""

from __future__ import annotations

import asyncio
import re
import sqlite3
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from prometheus_client import REGISTRY

from service.dataplane import DataPlane, InferenceRequest
from service.errors import InvalidInput, NotFound
from service.models.registry import ModelRegistry
from service.ops import Served
from service.ops.feedback import STORE_FILE, Feedback
from service.ops.feedback_store import BadLabel, FeedbackStore, Item, Remembered, Target
from service.settings import Settings
from tests.service.modelfactory import write_scale_version

CLASSES = ("north", "east", "south", "west")
CLASSIFIER = Target("y", CLASSES)
REGRESSOR = Target("y")


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def remembered(rid: str, prediction: list[Any], model: str = "c", version: int = 1, target: Target = CLASSIFIER,
               served: float = 1000.0, keep_s: float = 3600.0) -> Remembered:  # fmt: skip
    return Remembered(rid, model, version, served, served + keep_s, target, prediction)


def test_predictions_are_the_arg_max_the_sigmoid_threshold_or_the_values() -> None:
    scores = np.array([[0.1, 0.7, 0.1, 0.1], [0.4, 0.0, 0.0, 0.6]], np.float32)
    assert CLASSIFIER.prediction({"y": scores}) == [1, 3]
    binary = Target("p", ("no", "yes"))
    assert binary.prediction({"p": np.array([[0.2], [0.5], [0.93]], np.float32)}) == [0, 1, 1]
    values = REGRESSOR.prediction({"y": np.array([[1.5], [-2.25]], np.float32)})
    assert values == [[1.5], [-2.25]]


def test_labels_are_class_indices_or_names_one_per_row() -> None:
    assert CLASSIFIER.score([1], "label", 1).correct == 1
    assert CLASSIFIER.score([1], "label", "east").correct == 1
    assert CLASSIFIER.score([1, 3, 0], "label", [1, "south", 0]).__dict__ == {"rows": 3, "correct": 2,
                                                                               "abs_errors": []}  # fmt: skip
    scored = REGRESSOR.score([[1.5], [-2.0]], "value", [2.0, -1.0])
    assert (scored.rows, scored.abs_errors) == (2, [0.5, 1.0])
    assert REGRESSOR.score([[1.5]], "value", 1.0).abs_errors == [0.5]


@pytest.mark.parametrize(
    ("target", "prediction", "field", "truth", "message"),
    [
        (CLASSIFIER, [1], "label", 4, "class index 0-3"),
        (CLASSIFIER, [1], "label", -1, "class index 0-3"),
        (CLASSIFIER, [1], "label", True, "class index 0-3"),
        (CLASSIFIER, [1], "label", 1.0, "class index 0-3"),
        (CLASSIFIER, [1], "label", "up", "unknown class 'up'"),
        (CLASSIFIER, [1, 2], "label", 1, "2 row(s); got 1 label"),
        (CLASSIFIER, [1], "value", 1, "classifier: give 'label'"),
        (REGRESSOR, [[1.0]], "label", 1, "regressor: give 'value'"),
        (REGRESSOR, [[1.0], [2.0]], "value", 1.0, "2 value(s); got 1"),
        (REGRESSOR, [[1.0]], "value", "high", "number or nested lists"),
        (REGRESSOR, [[1.0]], "value", [True], "number or nested lists"),
        (REGRESSOR, [[1.0], [2.0]], "value", [[1.0], 2.0], "regular"),
        (REGRESSOR, [[1.0]], "value", [float("nan")], "finite"),
    ],
)
def test_a_truth_that_does_not_fit_is_a_bad_label_saying_why(
    target: Target, prediction: list[Any], field: str, truth: Any, message: str
) -> None:
    with pytest.raises(BadLabel, match=re.escape(message)):
        target.score(prediction, field, truth)


def test_two_workers_share_the_store(tmp_path: Path) -> None:
    """Two store instances on one file, as two worker processes have: what one remembers, the other
    matches, once; the other request ids get their reasons."""
    one, two = FeedbackStore(tmp_path / STORE_FILE), FeedbackStore(tmp_path / STORE_FILE)
    assert one.remember([remembered("a", [1]), remembered("b", [2, 0]), remembered("r", [[1.0]], "reg", 3,
                         REGRESSOR)]) == 3  # fmt: skip
    items = [Item("a", "label", "east"), Item("b", "label", [2, 2]), Item("r", "value", 2.0),
             Item("zz", "label", 1), Item("a", "label", 1)]  # fmt: skip
    outcomes = two.match("c", items, now=1010.0)
    assert [o.status for o in outcomes] == ["matched", "matched", "wrong_model", "unknown", "duplicate"]
    assert [(o.scored.rows, o.scored.correct) for o in outcomes[:2] if o.scored] == [(1, 1), (2, 1)]
    assert outcomes[2].error is not None and "answered by model 'reg'" in outcomes[2].error
    assert outcomes[0].version == 1 and outcomes[0].classifier
    [again] = one.match("c", [Item("b", "label", [2, 0])], now=1011.0)
    assert again.status == "duplicate", "the feedback counted in the other worker's store"
    [reg] = one.match("reg", [Item("r", "value", 0.25)], now=1012.0)
    assert reg.status == "matched" and reg.version == 3 and not reg.classifier
    assert reg.scored is not None and reg.scored.abs_errors == [0.75]
    [bad] = two.match("c", [Item("zz", "value", 1.0)], now=1012.0)
    assert bad.status == "unknown"


def test_a_bad_label_leaves_the_prediction_open(tmp_path: Path) -> None:
    store = FeedbackStore(tmp_path / STORE_FILE)
    store.remember([remembered("a", [1])])
    assert [o.status for o in store.match("c", [Item("a", "label", 9)], 1001.0)] == ["bad_label"]
    assert [o.status for o in store.match("c", [Item("a", "label", 1)], 1002.0)] == ["matched"]


def test_predictions_expire_and_are_pruned(tmp_path: Path) -> None:
    store = FeedbackStore(tmp_path / STORE_FILE)
    store.remember([remembered("old", [1], keep_s=10), remembered("new", [1], keep_s=100)])
    [late] = store.match("c", [Item("old", "label", 1)], now=1011.0)
    assert late.status == "unknown", "past keep_s (not pruned yet) counts as unknown"
    assert store.prune(now=1011.0) == 1
    with sqlite3.connect(tmp_path / STORE_FILE) as db:
        assert [r[0] for r in db.execute("SELECT request_id FROM predictions")] == ["new"]


def test_the_window_covers_the_latest_items_within_its_seconds(tmp_path: Path) -> None:
    store = FeedbackStore(tmp_path / STORE_FILE)
    store.remember([remembered(f"r{i}", [i % 2]) for i in range(10)])
    for i in range(10):  # r0..r4 wrong, r5..r9 right; one feedback per second
        truth = (i % 2) if i >= 5 else 1 - i % 2
        store.match("c", [Item(f"r{i}", "label", truth)], now=2000.0 + i)
    everything = store.window("c", 1, now=2009.0, items=100, seconds=100)
    assert (everything.rows, everything.correct) == (10, 5)
    latest = store.window("c", 1, now=2009.0, items=4, seconds=100)
    assert (latest.rows, latest.correct) == (4, 4), "the 4 latest items"
    recent = store.window("c", 1, now=2009.0, items=100, seconds=6.5)
    assert (recent.rows, recent.correct) == (7, 5), "items of the last 6.5 s: r3..r9"
    assert store.window("c", 2, now=2009.0, items=100, seconds=100).rows == 0


# ----- the feature through a real data plane ------------------------------------------------------
def wait_for_rows(path: Path, count: int, timeout_s: float = 10.0) -> None:
    """Until the store holds ``count`` predictions (the writer thread stores them off the request path)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if path.exists():
            with sqlite3.connect(path) as db:
                if db.execute("SELECT count(*) FROM predictions").fetchone()[0] >= count:
                    return
        time.sleep(0.02)
    raise AssertionError(f"the store did not get {count} predictions within {timeout_s} s")


@pytest.fixture
def plane(tmp_path: Path) -> DataPlane:
    repo = tmp_path / "repo"
    write_scale_version(repo, "fc", 1, 2.0, labels=list(CLASSES))  # classifier: arg max of x
    write_scale_version(repo, "fr", 1, 3.0, shape=[-1, 1])  # regressor: y = 3x
    write_scale_version(repo, "quiet", 1, 1.0, labels=list(CLASSES))
    (repo / "serving.yaml").write_text("models:\n  fc: {feedback: {}}\n  fr: {feedback: {keep_s: 60}}\n")
    settings = Settings(repository=repo, poll_interval_s=0, state_dir=tmp_path / "state", feedback_window=3)
    return DataPlane(ModelRegistry(settings))


def test_feedback_through_the_data_plane_gives_accuracy_and_error(plane: DataPlane, tmp_path: Path) -> None:
    rows = [[9, 0, 0, 0], [0, 9, 0, 0], [0, 0, 9, 0], [0, 0, 0, 9], [1, 2, 3, 4]]  # classes 0, 1, 2, 3, 3
    feedback = plane.ops.feedback
    counts = {r: sample("serving_feedback_total", model="fc", version="" if r == "unknown" else "1", result=r)
              for r in ("correct", "wrong", "unknown", "duplicate")}  # fmt: skip
    errors = sample("serving_feedback_abs_error_count", model="fr", version="1")

    async def main() -> tuple[dict[str, Any], dict[str, Any]]:
        await plane.registry.start()
        assert set(feedback.keep) == {"fc", "fr"} and feedback.keep["fr"] == 60.0
        for i, row in enumerate(rows):
            await plane.infer(
                InferenceRequest("fc", {None: np.array([row], np.float32)}, "native", request_id=f"c{i}")
            )
        await plane.infer(InferenceRequest("fr", {None: np.array([[1.0], [2.0]])}, "native", request_id="r0"))
        await plane.infer(InferenceRequest("quiet", {None: np.array([rows[0]])}, "native", request_id="q0"))
        await asyncio.to_thread(wait_for_rows, tmp_path / "state" / STORE_FILE, len(rows) + 1)
        truths = [0, "east", 1, 3, 0]  # right, right, wrong, right, wrong
        items = [Item(f"c{i}", "label", t) for i, t in enumerate(truths)]
        classified = await feedback.submit("fc", [*items, Item("q0", "label", 0), Item("c0", "label", 0)])
        measured = await feedback.submit("fr", [Item("r0", "value", [3.5, 5.0])])
        with pytest.raises(NotFound, match="available models"):
            await feedback.submit("nope", items)
        with pytest.raises(InvalidInput, match="takes no feedback"):
            await feedback.submit("quiet", items)
        await plane.registry.close()
        return classified, measured

    classified, measured = asyncio.run(main())
    plane.ops.close()
    statuses = [r["status"] for r in classified["results"]]
    assert statuses == ["matched"] * 5 + ["unknown", "duplicate"], "q0: its model keeps no predictions"
    assert [r["correct"] for r in classified["results"][:5]] == [1, 1, 0, 1, 0]
    assert classified["counts"] == {"matched": 5, "unknown": 1, "duplicate": 1}
    assert classified["windows"] == [{"version": 1, "rows": 3, "accuracy": 1 / 3}], "the 3 latest (window 3)"
    assert sample("serving_feedback_accuracy", model="fc", version="1") == pytest.approx(1 / 3)
    assert sample("serving_feedback_window_rows", model="fc", version="1") == 3
    for result, n in {"correct": 3, "wrong": 2, "unknown": 1, "duplicate": 1}.items():
        version = "" if result == "unknown" else "1"
        got = sample("serving_feedback_total", model="fc", version=version, result=result)
        assert got == counts[result] + n, result
    assert measured["results"] == [
        {"request_id": "r0", "status": "matched", "version": 1, "rows": 2, "abs_error": 0.75}
    ]
    assert measured["windows"] == [{"version": 1, "rows": 2, "mean_abs_error": 0.75}], "|3.5-3| and |5-6|"
    assert sample("serving_feedback_mean_abs_error", model="fr", version="1") == pytest.approx(0.75)
    assert sample("serving_feedback_abs_error_count", model="fr", version="1") == errors + 2
    assert sample("serving_feedback_abs_error_bucket", model="fr", version="1", le="0.3") == 0
    assert sample("serving_feedback_abs_error_bucket", model="fr", version="1", le="1.0") >= 2


def test_a_full_queue_drops_and_counts(tmp_path: Path) -> None:
    settings = Settings(
        repository=tmp_path, poll_interval_s=0, state_dir=tmp_path / "state", feedback_queue=2
    )
    feedback = Feedback(ModelRegistry(settings))
    feedback.keep = {"fq": 60.0}  # on for fq, with no writer thread started: nothing drains the queue
    before = sample("serving_feedback_dropped_total", model="fq", reason="queue_full")
    for i in range(5):
        feedback.observe(Served("fq", 1, "native", f"x{i}", {}, {}, 0.0))
    feedback.observe(Served("off", 1, "native", "y", {}, {}, 0.0))
    assert feedback.queue.qsize() == 2
    assert sample("serving_feedback_dropped_total", model="fq", reason="queue_full") == before + 3
    assert sample("serving_feedback_dropped_total", model="off", reason="queue_full") == 0
