"""The feedback store: predictions remembered by request id in SQLite, shared by every worker process.

One file, ``<SERVING_STATE_DIR>/feedback.sqlite3``, in WAL mode (readers never wait for the writer;
writers of different workers take turns under SQLite's own lock, waiting up to ``timeout_s``). A worker's
writer thread stores what its models predicted (:meth:`FeedbackStore.remember`, in batches); any worker
matches feedback against them (:meth:`FeedbackStore.match`), so feedback may reach a worker other than
the one that answered. Each row is kept until its model's ``keep_s`` has passed
(:meth:`FeedbackStore.prune`); a row takes one feedback, a second one for the same request id is a
``duplicate``.

What a prediction is (:class:`Target`): for a classifier (its ``metadata.json`` has class ``labels``) the
class index of each row of the first output (the arg max; a single sigmoid column means class 1 at
>= 0.5); for a regressor each row's values of the first output.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

SCHEMA = """
CREATE TABLE IF NOT EXISTS predictions (
    request_id TEXT PRIMARY KEY, model TEXT NOT NULL, version INTEGER NOT NULL,
    served REAL NOT NULL, expires REAL NOT NULL, prediction TEXT NOT NULL,
    feedback REAL, seq INTEGER, scored INTEGER, correct INTEGER, abs_error REAL
);
CREATE INDEX IF NOT EXISTS predictions_window ON predictions (model, version, seq);
CREATE INDEX IF NOT EXISTS predictions_seq ON predictions (seq);
CREATE INDEX IF NOT EXISTS predictions_expiry ON predictions (expires);
CREATE TABLE IF NOT EXISTS versions (
    model TEXT NOT NULL, version INTEGER NOT NULL, output TEXT NOT NULL, labels TEXT,
    PRIMARY KEY (model, version)
);
"""


class BadLabel(ValueError):
    """A true label or value that does not fit the prediction it is matched with."""


@dataclass(frozen=True)
class Target:
    """How one model version's predictions and true values are read."""

    output: str
    labels: tuple[str, ...] | None = None
    """A classifier's class names (index = class); ``None``: a regressor."""

    def prediction(self, outputs: dict[str, np.ndarray]) -> list[Any]:
        """Per row: the predicted class index (classifiers) or the list of predicted values."""
        scores = np.asarray(outputs[self.output])
        scores = scores.reshape(scores.shape[0], int(np.prod(scores.shape[1:], dtype=np.int64)))
        if self.labels is None:
            return scores.astype(np.float64).tolist()
        if scores.shape[1] == 1:
            return (scores[:, 0] >= 0.5).astype(np.int64).tolist()
        return scores.argmax(axis=1).tolist()

    def score(self, prediction: list[Any], field: str, truth: Any) -> Scored:
        """``truth`` (one per row; a plain value for a one-row request) against ``prediction``."""
        rows = len(prediction)
        if self.labels is None:
            if field != "value":
                raise BadLabel("the model is a regressor: give 'value' (the true number(s)), not 'label'")
            return self._score_values(prediction, truth)
        if field != "label":
            raise BadLabel("the model is a classifier: give 'label' (class index or name), not 'value'")
        truths = truth if isinstance(truth, list) else [truth]
        if len(truths) != rows:
            raise BadLabel(f"the request had {rows} row(s); got {len(truths)} label(s)")
        indices = [self._class_index(t) for t in truths]
        return Scored(rows, sum(p == t for p, t in zip(prediction, indices, strict=True)))

    def _class_index(self, label: Any) -> int:
        assert self.labels is not None
        if isinstance(label, str):
            if label in self.labels:
                return self.labels.index(label)
            raise BadLabel(f"unknown class {label!r}; classes: {list(self.labels)}")
        if isinstance(label, int) and not isinstance(label, bool) and 0 <= label < len(self.labels):
            return label
        raise BadLabel(f"a label is a class index 0-{len(self.labels) - 1} or a class name; got {label!r}")

    @staticmethod
    def _score_values(prediction: list[Any], truth: Any) -> Scored:
        predicted = np.asarray(prediction, np.float64).reshape(-1)
        try:
            given = np.asarray(truth)
        except ValueError:
            raise BadLabel("'value' must be a number or nested lists of numbers (regular)") from None
        if given.dtype.kind not in "iuf":
            raise BadLabel(f"'value' must be a number or nested lists of numbers; got {truth!r:.80}")
        given = given.astype(np.float64).reshape(-1)
        if given.size != predicted.size:
            raise BadLabel(f"the prediction has {predicted.size} value(s); got {given.size}")
        if not np.isfinite(given).all():
            raise BadLabel("'value' must be finite numbers")
        return Scored(int(predicted.size), 0, np.abs(given - predicted).tolist())


@dataclass
class Scored:
    """One feedback item's figures: rows (classifiers) or values (regressors) scored."""

    rows: int
    correct: int = 0
    abs_errors: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class Item:
    """One feedback item as a client sent it: ``field`` is ``label`` or ``value``."""

    request_id: str
    field: str
    truth: Any


@dataclass(frozen=True)
class Remembered:
    """One prediction to store."""

    request_id: str
    model: str
    version: int
    served: float
    expires: float
    target: Target
    prediction: list[Any]


@dataclass
class Outcome:
    """What became of one feedback item: ``matched``, ``unknown``, ``wrong_model``, ``duplicate`` or
    ``bad_label``; ``version`` and ``scored`` once the request id was found (and matched)."""

    request_id: str
    status: str
    version: int | None = None
    classifier: bool = False
    scored: Scored | None = None
    error: str | None = None


@dataclass(frozen=True)
class Window:
    """The latest feedback of one model version: rows or values scored, correct rows, summed error."""

    rows: int
    correct: int
    abs_error: float


class FeedbackStore:
    """The SQLite file every worker opens; one connection per instance, used under a lock."""

    def __init__(self, path: Path, timeout_s: float = 10.0) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._targets: dict[tuple[str, int], Target] = {}
        self._db = sqlite3.connect(path, timeout=timeout_s, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        with self._lock:
            self._db.executescript(SCHEMA)  # idempotent: every worker runs it

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (``BEGIN IMMEDIATE``: the write lock at once, so matches never race)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def remember(self, rows: Iterable[Remembered]) -> int:
        """Store predictions (a request id seen again replaces the older row); returns how many."""
        rows = list(rows)
        targets = {(r.model, r.version): r.target for r in rows}
        with self._transaction() as db:
            db.executemany(
                "INSERT OR REPLACE INTO versions VALUES (?, ?, ?, ?)",
                [(m, v, t.output, None if t.labels is None else json.dumps(t.labels))
                 for (m, v), t in targets.items()],
            )  # fmt: skip
            db.executemany(
                "INSERT OR REPLACE INTO predictions (request_id, model, version, served, expires, prediction)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                [(r.request_id, r.model, r.version, r.served, r.expires, json.dumps(r.prediction)) for r in rows],
            )  # fmt: skip
        self._targets.update(targets)
        return len(rows)

    def prune(self, now: float) -> int:
        """Delete the predictions whose keep time has passed; returns how many."""
        with self._transaction() as db:
            return db.execute("DELETE FROM predictions WHERE expires < ?", (now,)).rowcount

    def match(self, model: str, items: Sequence[Item], now: float) -> list[Outcome]:
        """Score each item against the prediction of its request id, in one transaction."""
        outcomes = []
        with self._transaction() as db:
            seq = db.execute("SELECT COALESCE(MAX(seq), 0) FROM predictions").fetchone()[0]
            for item in items:
                outcome = self._match_one(db, model, item, now, seq + 1)
                seq += outcome.status == "matched"
                outcomes.append(outcome)
        return outcomes

    def _match_one(self, db: sqlite3.Connection, model: str, item: Item, now: float, seq: int) -> Outcome:
        row = db.execute(
            "SELECT model, version, expires, prediction, feedback FROM predictions WHERE request_id = ?",
            (item.request_id,),
        ).fetchone()
        rid = item.request_id
        if row is None or row[2] < now:
            return Outcome(rid, "unknown", error=f"no prediction is remembered for request id {rid!r}")
        served_by, version, _, prediction, feedback = row
        if served_by != model:
            return Outcome(rid, "wrong_model", version, error=f"request id {rid!r} was answered by model "
                           f"{served_by!r}, not {model!r}")  # fmt: skip
        target = self._target(db, model, version)
        classifier = target.labels is not None
        if feedback is not None:
            return Outcome(rid, "duplicate", version, classifier,
                           error=f"request id {rid!r} has had its feedback already")  # fmt: skip
        try:
            scored = target.score(json.loads(prediction), item.field, item.truth)
        except BadLabel as exc:
            return Outcome(rid, "bad_label", version, classifier, error=str(exc))
        db.execute(
            "UPDATE predictions SET feedback = ?, seq = ?, scored = ?, correct = ?, abs_error = ? "
            "WHERE request_id = ?",
            (now, seq, scored.rows, scored.correct, float(sum(scored.abs_errors)), rid),
        )
        return Outcome(rid, "matched", version, classifier, scored)

    def _target(self, db: sqlite3.Connection, model: str, version: int) -> Target:
        known = self._targets.get((model, version))
        if known is None:
            output, labels = db.execute(
                "SELECT output, labels FROM versions WHERE model = ? AND version = ?", (model, version)
            ).fetchone()
            known = Target(output, None if labels is None else tuple(json.loads(labels)))
            self._targets[(model, version)] = known
        return known

    def window(self, model: str, version: int, now: float, items: int, seconds: float) -> Window:
        """The figures of the latest ``items`` feedback items of a version (in the order they were
        matched, all workers together) received within ``seconds``."""
        with self._lock:
            rows, correct, error = self._db.execute(
                "SELECT COALESCE(SUM(scored), 0), COALESCE(SUM(correct), 0), COALESCE(SUM(abs_error), 0) "
                "FROM (SELECT scored, correct, abs_error FROM predictions "
                "WHERE model = ? AND version = ? AND feedback >= ? ORDER BY seq DESC LIMIT ?)",
                (model, version, now - seconds, items),
            ).fetchone()
        return Window(int(rows), int(correct), float(error))

    def close(self) -> None:
        with self._lock:
            self._db.close()
