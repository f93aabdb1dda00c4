"""The playground page (/ui) in a real headless Chromium against a real server with really trained models.

Debian's ``/usr/bin/chromium`` driven by Playwright (never Playwright's own browser download). The CNN is
trained here for two epochs on the full MNIST training set (98 %, ~25 s) (the session's quick CNN, 2,000 images, is too
weak for drawn digits); linear, mlp and rnn come from the session's quick-trained repository. Strokes are
synthesised pointer input (the mouse, and touch through the DevTools protocol); uploads are real MNIST
test digits written as PNGs.

The page's screenshot is saved as a test artefact under pytest's temporary directory; set
``UI_SCREENSHOT=docs/playground.png`` to also write it there (the README's picture).
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
from PIL import Image
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.conftest import ROOT
from tests.server import Server
from tests.service.protocols import mnist_style as ref

pytestmark = pytest.mark.e2e
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip
WAIT_MS = 20_000
CNN_MIN_ACCURACY = 0.975


# ----- fixtures: a repository, a server, a browser ------------------------------------------------
@pytest.fixture(scope="module")
def repo(trained_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = tmp_path_factory.mktemp("ui-repo")
    for name in ("linear", "mlp", "rnn"):
        shutil.copytree(trained_repo / name, repo / name)
    cmd = [sys.executable, "-m", "training", "train", "--models", "cnn", "--epochs", "2", "--seed", "0",
           "--repo", str(repo)]  # fmt: skip
    env = {**os.environ, "KERAS_BACKEND": "tensorflow"}
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    accuracy = metadata(repo, "cnn")["metrics"]["accuracy"]
    assert accuracy >= CNN_MIN_ACCURACY, f"the CNN reached only {accuracy:.4f} on the MNIST test set"
    broken = repo / "broken" / "1"  # a model whose only version cannot load: the page shows it failed
    shutil.copytree(trained_repo / "linear" / "1", broken)
    (broken / "model.onnx").write_bytes(b"not an ONNX model")
    return repo


@pytest.fixture(scope="module")
def server(repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with Server(repo, tmp_path_factory.mktemp("ui-logs") / "server.log", workers=1) as srv:
        yield srv


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Browser, server: Server) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, has_touch=True)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(server.url + "/ui")
    expect(page.locator('#models-table tr[data-model="cnn"]')).to_have_count(1, timeout=WAIT_MS)
    expect(page.locator("#cnn-status")).to_contain_text("Answering", timeout=WAIT_MS)
    yield page
    context.close()
    assert errors == [], f"uncaught errors in the page: {errors}"


@pytest.fixture(scope="module")
def mnist() -> tuple[np.ndarray, np.ndarray]:
    """The MNIST test set, ``[10000, 28, 28]`` raw 0–255 and the labels."""
    from training.data import load_mnist

    data = load_mnist(limit_train=1)
    return data.x_test[..., 0], data.y_test


# ----- helpers --------------------------------------------------------------------------------------
def metadata(repo: Path, name: str) -> dict[str, Any]:
    return json.loads((repo / name / "1" / "metadata.json").read_text())


def predict(server: Server, model: str, batch: Any) -> float:
    """The first output value the native API gives for ``batch``."""
    r = requests.post(server.url + "/v1/predict", json={"model": model, "inputs": batch}, timeout=30)
    assert r.status_code == 200, r.text
    (output,) = r.json()["outputs"].values()
    return float(np.asarray(output).ravel()[0])


def wait_digit(page: Page) -> str:
    """The digit the page shows once its prediction (and any protocol comparison) has finished."""
    page.wait_for_function(
        """() => document.querySelector('#digit-result').getAttribute('aria-busy') === 'false'
                 && document.querySelector('#digit-prediction').textContent !== '–'""",
        timeout=WAIT_MS,
    )
    return str(page.text_content("#digit-prediction"))


def wait_value(page: Page, output: str, busy: str) -> float:
    """``data-value`` of an ``<output>`` once its panel is no longer busy."""
    expect(page.locator(busy)).to_have_attribute("aria-busy", "false", timeout=WAIT_MS)
    expect(page.locator(output)).to_have_attribute("data-value", re.compile(r"\S"), timeout=WAIT_MS)
    return float(str(page.get_attribute(output, "data-value")))


def canvas_points(page: Page, points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Canvas coordinates (0–280) → page coordinates."""
    box = page.locator("#digit-canvas").bounding_box()
    assert box is not None
    return [(box["x"] + x * box["width"] / 280, box["y"] + y * box["height"] / 280) for x, y in points]


def draw_with_mouse(page: Page, points: list[tuple[float, float]]) -> None:
    (x0, y0), *rest = canvas_points(page, points)
    page.mouse.move(x0, y0)
    page.mouse.down()
    for x, y in rest:
        page.mouse.move(x, y, steps=4)
    page.mouse.up()


def draw_with_touch(page: Page, points: list[tuple[float, float]]) -> None:
    """One finger stroke through the DevTools protocol: the page sees pointer events of type touch."""
    cdp = page.context.new_cdp_session(page)
    (x0, y0), *rest = canvas_points(page, points)
    cdp.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [{"x": x0, "y": y0}]})
    for x, y in rest:
        cdp.send("Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [{"x": x, "y": y}]})
    cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
    cdp.detach()


def png_bytes(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(image, np.uint8), "L").save(buffer, format="PNG")
    return buffer.getvalue()


def tab_to(page: Page, element_id: str, key: str = "Tab", limit: int = 120) -> None:
    """Press Tab (or ``key``) until the element has the keyboard focus (fails if it never gets it)."""
    for _ in range(limit):
        page.keyboard.press(key)
        if page.evaluate("() => document.activeElement && document.activeElement.id") == element_id:
            return
    pytest.fail(f"#{element_id} never received the focus from the keyboard")


def js_exponent(x: float, digits: int) -> str:
    """JavaScript's ``x.toExponential(digits)``."""
    return re.sub(r"e([+-])0*(\d)", r"e\1\2", f"{x:.{digits}e}")


def js_metric(x: float) -> str:
    """``formatMetric`` of playground.js: 4 significant digits, exponent form outside [1e-3, 1e4)."""
    if x == int(x):
        return str(int(x))
    if 1e-3 <= abs(x) < 1e4:
        rounded = float(f"{x:.4g}")
        return str(int(rounded)) if rounded == int(rounded) else repr(rounded)
    return js_exponent(x, 2)


# ----- the model list -------------------------------------------------------------------------------
HEADLINE = {"linear": "prediction_at_5", "mlp": "accuracy", "cnn": "accuracy", "rnn": "test_mse"}


def test_the_model_list_shows_each_version_from_the_server(page: Page, repo: Path) -> None:
    for name, metric in HEADLINE.items():
        meta = metadata(repo, name)
        row = page.locator(f'#models-table tr[data-model="{name}"][data-version="1"]')
        expect(row).to_contain_text("1 (default)")
        expect(row.locator(".state")).to_have_text("ready")
        expect(row).to_contain_text("onnx · CPUExecutionProvider")
        text = str(row.text_content())
        assert meta["input_contract"] in text
        spec = meta["inputs"][0]
        assert f"{spec['name']} {spec['dtype']} [{', '.join(map(str, spec['shape']))}]" in text
        assert f"{metric} {js_metric(meta['metrics'][metric])}" in text, text
        parity = meta["parity"]
        worst = max(parity["onnx_vs_saved_model"], parity["onnx_vs_keras"])
        shown = "0" if worst == 0 else js_exponent(worst, 1)
        assert f"{shown} ✓ ({parity['samples']} samples)" in text, text
    broken = page.locator('#models-table tr[data-model="broken"]')
    expect(broken.locator(".state")).to_have_text("failed")
    expect(broken.locator(".state-error")).to_contain_text("model.onnx")
    expect(page.locator("#cnn-status")).to_have_text("Answering: cnn v1 · onnx · CPUExecutionProvider")


# ----- the digit: drawing, uploads, protocols -------------------------------------------------------
def test_a_drawn_one_and_zero_are_recognised(page: Page) -> None:
    draw_with_mouse(page, [(150, 40), (146, 100), (141, 170), (137, 240)])  # a "1", with the mouse
    assert wait_digit(page) == "1"
    expect(page.locator("#digit-chart rect.bar")).to_have_count(10)
    expect(page.locator("#digit-chart rect.bar.best")).to_have_attribute("data-label", "1")
    expect(page.locator("#digit-answered")).to_have_text("cnn v1 · onnx · CPUExecutionProvider")
    expect(page.locator("#digit-latency")).to_have_text(re.compile(r"^\d+\.\d ms$"))

    page.click("#digit-clear")
    expect(page.locator("#digit-prediction")).to_have_text("–")
    expect(page.locator("#digit-chart rect.bar")).to_have_count(0)
    turns = np.linspace(0, 2 * np.pi * 1.05, 48)  # a "0" with a finger: one oval stroke
    draw_with_touch(page, [(140 + 55 * np.sin(t), 140 - 85 * np.cos(t)) for t in turns])
    assert wait_digit(page) == "0"
    expect(page.locator("#digit-chart rect.bar")).to_have_count(10)


def test_ten_uploaded_mnist_test_digits(
    page: Page, mnist: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    """One test digit of each class as a PNG; what the page sends is MNIST's preprocessing of it."""
    images, labels = mnist
    picked = [int(np.flatnonzero(labels == d)[0]) for d in range(10)]
    correct = 0
    for index in picked:
        image = images[index]
        path = tmp_path / f"test-{index}-label-{labels[index]}.png"
        path.write_bytes(png_bytes(image))
        with page.expect_request(lambda r: r.url.endswith("/v1/predict")) as sent:
            page.set_input_files("#digit-file", str(path))
        shown = wait_digit(page)
        correct += shown == str(labels[index])
        expect(page.locator("#digit-chart rect.bar")).to_have_count(10)
        pixels = np.asarray(sent.value.post_data_json["inputs"]["pixels"], np.float64)
        assert pixels.shape == (1, 28, 28, 1)
        expected = ref.mnist_style(image)
        assert expected is not None
        assert np.abs(pixels[0, :, :, 0] - expected).max() <= 1, (
            "the page's preprocessing is not the reference's"
        )
        assert np.corrcoef(pixels.ravel(), image.ravel())[0, 1] > 0.8, "the page changed the digit"
    assert correct >= 9, f"only {correct} of 10 uploaded test digits were recognised"


def test_a_dropped_dark_on_light_picture_is_inverted(
    page: Page, server: Server, mnist: tuple[np.ndarray, np.ndarray]
) -> None:
    """A dark digit on white paper, dropped on the canvas, is sent as the white-on-black digit."""
    images, labels = mnist
    index = int(np.flatnonzero(labels == 3)[0])
    paper = base64.b64encode(png_bytes(255 - images[index])).decode()
    with page.expect_request(lambda r: r.url.endswith("/v1/predict")) as sent:
        page.evaluate(
            """(b64) => {
                const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
                const dt = new DataTransfer();
                dt.items.add(new File([bytes], "three-on-paper.png", { type: "image/png" }));
                document.querySelector("#drop-zone").dispatchEvent(
                    new DragEvent("drop", { dataTransfer: dt, bubbles: true, cancelable: true }));
            }""",
            paper,
        )
    shown = wait_digit(page)
    pixels = np.asarray(sent.value.post_data_json["inputs"]["pixels"], np.float64)[0, :, :, 0]
    expected = ref.mnist_style(images[index])
    assert expected is not None and np.abs(pixels - expected).max() <= 1
    r = requests.post(
        server.url + "/v1/predict", json={"model": "cnn", "inputs": [expected[..., None].tolist()]}
    )
    assert shown == str(int(np.argmax(r.json()["outputs"]["output_0"][0])))


def test_the_page_preprocesses_a_drawing_exactly_like_the_reference(page: Page) -> None:
    """The browser's ``mnistStyle`` on a 280×280 drawing gives the reference's numbers."""
    from PIL import ImageDraw

    drawing = Image.new("L", (280, 280), 0)
    ImageDraw.Draw(drawing).line([(200, 60), (120, 150), (90, 250)], fill=255, width=20, joint="curve")
    ImageDraw.Draw(drawing).ellipse([(40, 30), (120, 100)], outline=180, width=12)
    grey = np.asarray(drawing, np.float64)
    got = page.evaluate(
        "([g, w, h]) => Array.from(window.playground.mnistStyle(Float64Array.from(g), w, h))",
        [grey.ravel().tolist(), 280, 280],
    )
    expected = ref.mnist_style(grey)
    assert expected is not None
    assert np.abs(np.asarray(got).reshape(28, 28) - expected).max() <= 1
    assert page.evaluate("() => window.playground.mnistStyle(new Float64Array(784), 28, 28)") is None


def test_the_three_protocols_agree(page: Page, mnist: tuple[np.ndarray, np.ndarray]) -> None:
    page.check("#digit-compare")
    page.click("#digit-example")  # the example digit of the CNN's metadata: MNIST test image 0
    assert wait_digit(page) == str(mnist[1][0])
    rows = page.locator("#protocols-table tbody tr")
    expect(rows).to_have_count(3)
    for i, protocol in enumerate(("native /v1/predict", "TF Serving REST", "KServe V2 REST")):
        cells = rows.nth(i).locator("th, td")
        expect(cells.nth(0)).to_have_text(protocol)
        expect(cells.nth(1)).to_have_text("v1")
        expect(cells.nth(2)).to_have_text(str(mnist[1][0]))
        assert float(str(cells.nth(3).text_content())) <= 1e-6  # max |Δ| against the native answer
    expect(page.locator("#protocols-verdict")).to_have_class("agree")
    expect(page.locator("#protocols-verdict")).to_contain_text(
        f"All three protocols agree: digit {mnist[1][0]} from v1"
    )


# ----- the other models -----------------------------------------------------------------------------
def test_the_mlp_form_starts_with_a_held_out_patient(page: Page, server: Server, repo: Path) -> None:
    from training.data import load_diabetes

    meta = metadata(repo, "mlp")
    patient = list(meta["example"][meta["inputs"][0]["name"]][0])
    shown = [float(page.input_value(f"#mlp-f{i}")) for i in range(10)]
    assert shown == patient
    held_out = load_diabetes(seed=0).x_test
    assert np.any(np.all(np.isclose(held_out, np.asarray(patient, np.float32)), axis=1)), "not a test row"
    page.fill("#mlp-f2", "35.5")
    patient[2] = 35.5
    page.click("#mlp-submit")
    p = wait_value(page, "#mlp-result", "#mlp-output")
    assert p == pytest.approx(predict(server, "mlp", [patient]), abs=1e-7)
    label = meta["labels"][1] if p > 0.5 else meta["labels"][0]
    expect(page.locator("#mlp-result")).to_have_text(f"{p:.4f} → {label}")
    expect(page.locator("#mlp-answered")).to_contain_text("mlp v1 · onnx · CPUExecutionProvider")
    page.click("#mlp-reset")
    assert float(page.input_value("#mlp-f2")) == meta["example"][meta["inputs"][0]["name"]][0][2]


def test_the_rnn_sequence_and_its_next_value(page: Page, server: Server) -> None:
    page.click("#rnn-generate")
    values = [float(v) for v in re.split(r"[\s,]+", page.input_value("#rnn-values").strip())]
    assert len(values) == 10 and all(18 < v < 30 for v in values)
    page.click("#rnn-submit")
    next_value = wait_value(page, "#rnn-result", "#rnn-output")
    assert next_value == pytest.approx(predict(server, "rnn", [[[v] for v in values]]), abs=1e-5)
    expect(page.locator("#rnn-result")).to_have_text(f"{next_value:.2f} °C")
    expect(page.locator("#rnn-chart circle.point")).to_have_count(10)
    expect(page.locator("#rnn-chart circle.next")).to_have_count(1)
    page.fill("#rnn-values", "25, 26, 27")
    page.click("#rnn-submit")
    expect(page.locator("#rnn-error")).to_have_text("The model takes exactly 10 values; there are 3.")


def test_the_linear_model(page: Page, server: Server) -> None:
    page.fill("#linear-x", "-3.5")
    page.click("#linear-submit")
    y = wait_value(page, "#linear-result", "#linear-output")
    assert y == pytest.approx(predict(server, "linear", [[-3.5]]), abs=1e-6)
    assert y == pytest.approx(-7.0, abs=0.1)
    expect(page.locator("#linear-result")).to_contain_text("f(-3.5) = -")


# ----- errors, keyboard, labels, contrast -----------------------------------------------------------
def test_a_stopped_version_gives_a_readable_error(
    page: Page, server: Server, repo: Path, tmp_path: Path
) -> None:
    parked = tmp_path / "mlp-1"
    shutil.move(repo / "mlp" / "1", parked)  # the server unloads the version it no longer finds
    try:
        row = page.locator('#models-table tr[data-model="mlp"][data-version="1"]')
        expect(row.locator(".state")).to_have_text("unloaded", timeout=WAIT_MS)  # live, without a reload
        expect(page.locator("#mlp-status")).to_contain_text("No ready version of mlp: v1 unloaded")
        page.click("#mlp-submit")
        error = page.locator("#mlp-error")
        expect(error).to_be_visible(timeout=WAIT_MS)
        expect(error).to_contain_text(
            "The server answered 503 Service Unavailable: model 'mlp' has no ready version"
        )
        expect(error).to_contain_text("retry in 1 s")
        expect(page.locator("#mlp-result")).to_have_text("–")
        for heading in ("#models-title", "#digit-title", "#mlp-title", "#rnn-title", "#linear-title"):
            expect(page.locator(heading)).to_be_visible()  # the rest of the page is still there
    finally:
        shutil.move(parked, repo / "mlp" / "1")
        deadline = time.monotonic() + 30
        while requests.get(server.url + "/readyz/mlp", timeout=5).status_code != 200:
            assert time.monotonic() < deadline, "mlp did not come back"
            time.sleep(0.2)
    expect(page.locator("#mlp-status")).to_contain_text("Answering: mlp v1", timeout=WAIT_MS)
    page.click("#mlp-submit")
    wait_value(page, "#mlp-result", "#mlp-output")
    expect(page.locator("#mlp-error")).to_be_hidden()


def test_the_main_controls_work_from_the_keyboard(page: Page, mnist: tuple[np.ndarray, np.ndarray]) -> None:
    tab_to(page, "digit-example")
    outline = page.evaluate("() => getComputedStyle(document.activeElement).outlineStyle")
    assert outline == "solid", "the focused control has no visible focus ring"
    page.keyboard.press("Enter")
    assert wait_digit(page) == str(mnist[1][0])
    tab_to(page, "digit-clear", key="Shift+Tab")
    page.keyboard.press("Enter")
    expect(page.locator("#digit-prediction")).to_have_text("–")
    tab_to(page, "digit-example")
    page.keyboard.press("Enter")
    assert wait_digit(page) == str(mnist[1][0])
    tab_to(page, "digit-compare")
    page.keyboard.press("Space")
    expect(page.locator("#digit-compare")).to_be_checked()
    expect(page.locator("#protocols-verdict")).to_have_class("agree", timeout=WAIT_MS)

    tab_to(page, "mlp-f0")
    page.keyboard.press("Enter")  # Enter in a field submits the form
    wait_value(page, "#mlp-result", "#mlp-output")
    tab_to(page, "rnn-example")
    page.keyboard.press("Enter")
    tab_to(page, "rnn-submit")
    page.keyboard.press("Enter")
    wait_value(page, "#rnn-result", "#rnn-output")
    tab_to(page, "linear-x")
    page.keyboard.press("Control+A")
    page.keyboard.type("2")
    page.keyboard.press("Enter")
    wait_value(page, "#linear-result", "#linear-output")
    expect(page.locator("#linear-result")).to_contain_text("f(2) = ")


CONTRAST = """(selectors) => {
  const rgb = (text) => text.match(/[\\d.]+/g).map(Number);
  const luminance = ([r, g, b]) => {
    const lin = (c) => { c /= 255; return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * lin(r) + 0.7152 * lin(g) + 0.0722 * lin(b);
  };
  const background = (el) => {
    for (; el; el = el.parentElement) {
      const c = rgb(getComputedStyle(el).backgroundColor);
      if (c.length < 4 || c[3] > 0) return c.slice(0, 3);
    }
    return [255, 255, 255];
  };
  return selectors.map((s) => {
    const el = document.querySelector(s);
    const [a, b] = [luminance(rgb(getComputedStyle(el).color)), luminance(background(el))];
    return [s, (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05)];
  });
}"""


def test_controls_are_labelled_and_text_is_readable(page: Page) -> None:
    unlabelled = page.evaluate(
        """() => [...document.querySelectorAll('input, textarea, select')]
                  .filter((e) => !(e.labels && e.labels.length) && !e.getAttribute('aria-label'))
                  .map((e) => e.id || e.outerHTML)"""
    )
    assert unlabelled == []
    expect(page.locator("#mlp-fields label")).to_have_count(10)
    unnamed = page.evaluate(
        "() => [...document.querySelectorAll('button')].filter((b) => !b.textContent.trim()).length"
    )
    assert unnamed == 0
    for chart in ("#digit-canvas", "#digit-chart", "#rnn-chart"):
        expect(page.locator(chart)).to_have_attribute("role", "img")
        expect(page.locator(chart)).to_have_attribute("aria-label", re.compile(r"\w+"))
    page.fill("#linear-x", "")
    page.click("#linear-submit")  # a client-side error, to have an error box to measure
    expect(page.locator("#linear-error")).to_contain_text("needs a number")
    selectors = ["h1", "#digit-title", ".muted", "#mlp-submit", "#mlp-reset", "label[for=linear-x]",
                 '.state-ready', '.state-failed', "#linear-error", "#cnn-status"]  # fmt: skip
    ratios = page.evaluate(CONTRAST, selectors)
    low = [(s, round(r, 2)) for s, r in ratios if r < 4.5]
    assert low == [], f"contrast below 4.5:1 (WCAG AA): {low}"


def test_screenshot_artefact(page: Page, tmp_path_factory: pytest.TempPathFactory) -> None:
    """A screenshot of the page in use, kept under pytest's temporary directory (and UI_SCREENSHOT)."""
    draw_with_mouse(page, [(95, 70), (185, 70), (150, 150), (120, 245)])  # a "7"
    wait_digit(page)
    page.check("#digit-compare")
    wait_digit(page)
    expect(page.locator("#protocols-verdict")).to_have_class("agree", timeout=WAIT_MS)
    page.click("#mlp-submit")
    wait_value(page, "#mlp-result", "#mlp-output")
    page.click("#rnn-example")
    page.click("#rnn-submit")
    wait_value(page, "#rnn-result", "#rnn-output")
    page.click("#linear-submit")
    wait_value(page, "#linear-result", "#linear-output")
    folder = tmp_path_factory.mktemp("artefacts")
    path = folder / "playground.png"
    page.screenshot(path=str(path), full_page=True)
    with Image.open(path) as shot:
        assert shot.format == "PNG" and shot.width == 1280 and shot.height > 900
        compact = folder / "playground-compact.png"  # commit-sized: the same picture in 128 colours
        shot.convert("RGB").quantize(colors=128).save(compact, optimize=True)
    assert path.stat().st_size > 20_000 and compact.stat().st_size < 200_000, compact.stat().st_size
    print(f"playground screenshot: {path} (compact: {compact})")
    target = os.environ.get("UI_SCREENSHOT")
    if target:
        shutil.copy(compact, ROOT / target)
