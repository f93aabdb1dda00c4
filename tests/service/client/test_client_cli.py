"""The Python client and ``serving-cli`` against a real server: PNG, CSV and JSON inputs, errors."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from service.client import Client, ClientError
from service.client.cli import main
from service.client.inputs import csv_batch, image_batch
from tests.server import Server
from tests.service.modelfactory import write_scale_version

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    repo = tmp_path_factory.mktemp("repo")
    write_scale_version(repo, "vec", 1, 2.0)
    write_scale_version(repo, "img", 1, 1.0, shape=[-1, 8, 8, 1])
    write_scale_version(repo, "two", 1, 1.0, shape=[-1, 2], labels=["low", "high"])
    with Server(repo, tmp_path_factory.mktemp("logs") / "server.log") as srv:
        yield srv


def test_client_predict_and_error(server: Server) -> None:
    client = Client(server.url)
    out = client.predict("vec", np.ones((2, 4), np.float32))
    assert out["outputs"]["y"] == [[2.0] * 4] * 2 and out["version"] == 1
    assert client.predict("vec", {"x": [[1, 0, 0, 0]]}, version=1)["outputs"]["y"][0][0] == 2.0
    with pytest.raises(ClientError) as err:
        client.predict("vec", [[1, 2]])
    assert err.value.status == 400 and "expected shape [-1, 4]" in err.value.body["error"]
    assert {m["name"] for m in client.models()} == {"vec", "img", "two"}


def test_image_batch_greyscales_resizes_and_inverts(tmp_path: Path) -> None:
    picture = np.full((32, 32, 3), 255, np.uint8)
    picture[8:24, 12:20] = 0  # a dark stroke on white paper
    Image.fromarray(picture).save(tmp_path / "d.png")
    batch = image_batch(tmp_path / "d.png", [-1, 8, 8, 1])
    assert batch.shape == (1, 8, 8, 1) and batch.dtype == np.float32
    assert batch.max() > 200 and batch[0, 0, 0, 0] == 0.0  # inverted: background dark, stroke light
    kept = image_batch(tmp_path / "d.png", [-1, 8, 8, 1], invert=False)
    assert kept[0, 0, 0, 0] == 255.0


def test_csv_batch_skips_header(tmp_path: Path) -> None:
    (tmp_path / "rows.csv").write_text("a,b,c,d\n1,2,3,4\n5,6,7,8\n")
    np.testing.assert_array_equal(csv_batch(tmp_path / "rows.csv", [-1, 4]), [[1, 2, 3, 4], [5, 6, 7, 8]])


def test_cli_png_csv_json_and_classes(
    server: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(tmp_path / "black.png")
    assert main(["--url", server.url, "predict", "img", "--image", str(tmp_path / "black.png")]) == 0
    out = json.loads(capsys.readouterr().out)
    assert np.asarray(out["outputs"]["y"]).shape == (1, 8, 8, 1)
    (tmp_path / "row.csv").write_text("1,1,1,1\n")
    assert main(["--url", server.url, "predict", "vec", "--csv", str(tmp_path / "row.csv")]) == 0
    assert json.loads(capsys.readouterr().out)["outputs"]["y"] == [[2.0] * 4]
    assert main(["--url", server.url, "predict", "two", "--json", "[[0.1, 0.9], [0.8, 0.2]]"]) == 0
    assert json.loads(capsys.readouterr().out)["classes"] == ["high", "low"]
    assert main(["--url", server.url, "predict", "nope", "--json", "[[1]]"]) == 1
    assert "model 'nope' not found" in capsys.readouterr().err
    assert main(["--url", server.url, "predict", "vec", "--image", str(tmp_path / "missing.png")]) == 2
