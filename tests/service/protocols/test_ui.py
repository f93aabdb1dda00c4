"""The playground's routes and files in-process, and its MNIST preprocessing against real MNIST digits.

The browser side (the page's JavaScript computing the same numbers, drawing, uploads) is
``test_ui_e2e.py``.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import sys
import zipfile
from html.parser import HTMLParser
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image, ImageDraw

from service.bento.app import build_app
from service.protocols.ui import ASSETS, PAGE
from tests.conftest import ROOT
from tests.service.protocols import mnist_style as ref

UI = ROOT / "service" / "ui"
STATIC = (PAGE, *ASSETS)


class Client:
    """GET requests to the app in-process (ASGI, no server)."""

    def get(self, path: str) -> httpx.Response:
        async def fetch() -> httpx.Response:
            transport = httpx.ASGITransport(app=build_app())
            async with httpx.AsyncClient(transport=transport, base_url="http://ui.test") as client:
                return await client.get(path)

        return asyncio.run(fetch())


@pytest.fixture(scope="module")
def client() -> Client:
    return Client()


# ----- routes ---------------------------------------------------------------------------------------
def test_the_page_is_html_and_names_only_files_that_are_served(client: Client) -> None:
    r = client.get("/ui")
    assert r.status_code == 200 and r.headers["content-type"] == "text/html; charset=utf-8"
    assert r.content == (UI / PAGE).read_bytes()
    assert "connect-src 'self'" in r.headers["content-security-policy"]
    linked = re.findall(r'(?:src|href)="(/[^"]*)"', r.text)
    assert sorted(linked) == ["/ui/playground.css", "/ui/playground.js"]
    for path in linked:
        assert client.get(path).status_code == 200, path


@pytest.mark.parametrize(("name", "media_type"), sorted(ASSETS.items()))
def test_each_file_has_its_content_type(client: Client, name: str, media_type: str) -> None:
    r = client.get(f"/ui/{name}")
    assert r.status_code == 200 and r.headers["content-type"] == media_type
    assert r.content == (UI / name).read_bytes()
    assert r.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize(
    "path",
    ["/ui/index.html", "/ui/__init__.py", "/ui/..", "/ui/%2e%2e", "/ui/..%2f..%2fsettings.py",
     "/ui/playground.js.map", "/ui/PLAYGROUND.JS", "/ui/%2e%2e%2fprotocols%2fui.py"],
)  # fmt: skip
def test_no_other_file_is_reachable(client: Client, path: str) -> None:
    r = client.get(path)
    assert r.status_code == 404
    assert b"import" not in r.content and b"<html" not in r.content


def test_an_unknown_file_gets_the_json_error_naming_the_files(client: Client) -> None:
    r = client.get("/ui/app.js")
    assert r.status_code == 404 and r.headers["content-type"] == "application/json"
    assert (
        r.json()["error"]
        == "no file 'app.js' under /ui; the page's files are ['playground.css', 'playground.js']"
    )


# ----- the files ------------------------------------------------------------------------------------
def test_the_files_are_small_and_self_contained() -> None:
    texts = {name: (UI / name).read_text() for name in STATIC}
    assert sum(len(t.encode()) for t in texts.values()) < 100_000
    for name, text in texts.items():
        urls = set(re.findall(r"[a-z]+://[^\s\"')]+", text)) - {"http://www.w3.org/2000/svg"}
        assert not urls, f"{name} refers to {urls}: the page must work offline"
        assert not re.search(r"^\s*import\b|@import|\bimport\(", text, flags=re.M), f"{name} imports code"


class _Controls(HTMLParser):
    """Form controls, their labels and the buttons' texts of a static HTML page."""

    def __init__(self) -> None:
        super().__init__()
        self.controls: dict[str, dict[str, str | None]] = {}
        self.labelled: set[str] = set()
        self.buttons: list[str] = []
        self._button: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag in {"input", "textarea", "select"}:
            self.controls[a.get("id") or "?"] = a
        elif tag == "label" and a.get("for"):
            self.labelled.add(str(a["for"]))
        elif tag == "button":
            self._button = []

    def handle_data(self, data: str) -> None:
        if self._button is not None:
            self._button.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "button" and self._button is not None:
            self.buttons.append("".join(self._button).strip())
            self._button = None


def test_every_control_of_the_page_has_a_label() -> None:
    parsed = _Controls()
    parsed.feed((UI / PAGE).read_text())
    assert {"digit-file", "digit-compare", "rnn-values", "linear-x"} <= set(parsed.controls)
    unlabelled = [
        i for i, a in parsed.controls.items() if i not in parsed.labelled and not a.get("aria-label")
    ]
    assert unlabelled == []
    assert len(parsed.buttons) >= 9 and all(parsed.buttons), parsed.buttons


def test_the_preprocessing_constants_are_the_references() -> None:
    script = (UI / "playground.js").read_text()
    found = re.search(
        r"MNIST = Object\.freeze\(\{ size: (\d+), box: (\d+), centre: (\d+), inkThreshold: ([\d.]+) \}\)",
        script,
    )
    assert found, "MNIST constants not found in playground.js"
    assert (int(found[1]), int(found[2]), int(found[3]), float(found[4])) == (
        ref.SIZE, ref.BOX, ref.CENTRE, ref.INK_THRESHOLD,
    )  # fmt: skip


def test_pip_install_ships_the_static_files(tmp_path: Path) -> None:
    """A wheel built from the sources holds the three files, byte for byte."""
    source = tmp_path / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("service", "training"):
        shutil.copytree(ROOT / name, source / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    out = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path / "dist"), str(source)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    (wheel,) = (tmp_path / "dist").glob("keras_serving-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        for name in STATIC:
            assert zf.read(f"service/ui/{name}") == (UI / name).read_bytes(), name


# ----- the preprocessing, against real MNIST digits ---------------------------------------------------
@pytest.fixture(scope="module")
def mnist_test() -> tuple[np.ndarray, np.ndarray]:
    from training.data import load_mnist

    data = load_mnist(limit_train=1, limit_test=1000)
    return data.x_test[..., 0], data.y_test


def test_mnist_centres_digits_where_the_reference_does(mnist_test: tuple[np.ndarray, np.ndarray]) -> None:
    """MNIST's own digits: ink box of 20 pixels on the longer side, centre of mass at ``CENTRE`` ± 0.5."""
    images, _ = mnist_test
    coms = np.array([ref.centre_of_mass(im) for im in images])
    assert np.all(np.abs(coms.mean(axis=0) - ref.CENTRE) < 0.5), coms.mean(axis=0)
    boxes = np.array([max(ref.ink_box(im)) for im in images])
    assert np.mean(np.abs(boxes - ref.BOX) <= 1) > 0.9, np.bincount(boxes)


def test_a_real_digit_comes_back_nearly_unchanged(mnist_test: tuple[np.ndarray, np.ndarray]) -> None:
    """MNIST's digits are already MNIST-style: preprocessing one gives the digit back (most exactly)."""
    images, _ = mnist_test
    correlations, unchanged = [], 0
    for image in images[:300]:
        out = ref.mnist_style(image)
        assert out is not None and out.shape == (28, 28)
        assert out.min() >= 0 and out.max() == 255 and np.all(out == np.round(out))
        assert max(ref.ink_box(out)) == ref.BOX
        assert np.all(np.abs(np.array(ref.centre_of_mass(out)) - ref.CENTRE) <= 0.5)
        assert np.allclose(ref.centre_of_mass(out), ref.centre_of_mass(image), atol=1.0)
        correlations.append(np.corrcoef(out.ravel(), image.ravel())[0, 1])
        unchanged += int(np.array_equal(out, image))
    assert min(correlations) > 0.999, min(correlations)
    assert unchanged >= 0.75 * 300, f"only {unchanged} of 300 digits came back unchanged"


def test_a_big_drawing_becomes_a_centred_20_pixel_digit() -> None:
    """A "1" drawn off-centre on the 280×280 canvas: 20 pixels tall, thin, centred by mass."""
    canvas = Image.new("L", (280, 280), 0)
    ImageDraw.Draw(canvas).line([(60, 30), (70, 230)], fill=255, width=20)
    out = ref.mnist_style(np.asarray(canvas, np.float64))
    assert out is not None
    height, width = ref.ink_box(out)
    assert height == ref.BOX and 2 <= width <= 4
    # placed by the centre of mass before rounding to integers, which can move it by a few hundredths
    assert np.all(np.abs(np.array(ref.centre_of_mass(out)) - ref.CENTRE) <= 0.55)
    assert out.max() == 255


def test_a_blank_picture_has_no_digit() -> None:
    assert ref.mnist_style(np.zeros((280, 280))) is None


def test_area_weights_conserve_ink() -> None:
    for size_in, size_out in [(280, 20), (200, 20), (13, 20), (20, 20), (7, 3)]:
        w = ref.area_weights(size_in, size_out)
        assert np.allclose(w.sum(axis=1), 1.0)  # every target pixel is a weighted mean
        assert np.allclose(w.sum(axis=0), size_out / size_in)  # every source pixel counts equally
