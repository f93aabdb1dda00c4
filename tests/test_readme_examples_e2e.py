"""The README's curl and Python examples, run as written against a real server (1 worker) over the
quick-trained models.

Every line with a ``curl`` in a ``bash`` block that talks to ``localhost:3000`` and needs nothing the
page leaves to the reader (a ``...`` placeholder, a token, a TLS certificate, a server started with
other settings in the same block) is run with bash, one after another as a user would type them, with
``localhost:3000`` pointed at the test server. ``serving.yaml`` is the README's own canary and feedback
examples put together, plus the labels the native example names. What
the README shows after a command is what the test expects:

- ``# {...}`` (one or more comment lines): the JSON answer, with the same keys, list lengths and strings
  (numbers: any number, the quick-trained models differ from the README's);
- ``# 404 {...}``: that status and that JSON;
- ``# x-name: value`` or ``# HTTP/1.1 405 ...`` lines: those headers and status lines in the output;
- anything else (prose, no comment): a 2xx answer and a command that exits 0.

The ``python`` blocks that start with their imports (the client examples) run to the end with this
interpreter, their addresses pointed at the server's HTTP and both gRPC ports.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.server import Server
from tests.service.modelfactory import copy_version

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[1]
STATUS_JSON = re.compile(r"^(\d{3}) (\{.*\})$", re.S)
HEADER = re.compile(r"^(?:([a-z-]+): (\S+)|(HTTP/1\.1 \d{3} [A-Za-z ]+?))(\s{2,}\(.*\))?$", re.I)
"""A response header (``x-model-version: 1``) or status line (``HTTP/1.1 405 Method Not Allowed``) shown
after a command, maybe followed by a remark in parentheses."""
NOT_RUNNABLE = ("...", "$TOKEN", "https://", "--cacert")


@dataclass
class Example:
    """One curl command of the README, the block's variable assignments before it, and what follows it."""

    line: int
    command: str
    setup: list[str]
    shown: list[str] = field(default_factory=list)


def examples(text: str) -> list[Example]:
    """The runnable curl examples of ``text``'s bash blocks (continuation lines joined)."""
    found: list[Example] = []
    in_bash, pending, start = False, "", 0
    setup: list[str] = []
    last: Example | None = None  # the example the comment lines that follow belong to
    for number, raw in enumerate(text.splitlines(), 1):
        if raw.startswith("```"):
            in_bash, setup, last = raw.strip() == "```bash", [], None
            continue
        if not in_bash or (raw.startswith("SERVING_") and "./run.sh" in raw):
            # a block that starts a server of its own (tokens, TLS, tracing) is about that one
            in_bash = False
            continue
        line = pending + raw.strip()
        if line.endswith("\\"):
            pending, start = line[:-1] + " ", start or number
            continue
        pending, first, start = "", start or number, 0
        if line.startswith("#"):
            if last is not None:
                last.shown.append(line[1:].strip())
            continue
        last = None
        if re.match(r"^[A-Z]+=\$\(", line):
            setup.append(line)
        elif "curl " in line and "localhost:3000" in line and not any(s in line for s in NOT_RUNNABLE):
            last = Example(first, line, list(setup))
            found.append(last)
    return found


def same_shape(doc: Any, got: Any, where: str = "answer") -> None:
    """``got`` has ``doc``'s keys, list lengths, strings and literals; numbers only need to be numbers."""
    if isinstance(doc, dict):
        assert isinstance(got, dict) and set(got) == set(doc), f"{where}: keys {sorted(got)} != {sorted(doc)}"
        for key, value in doc.items():
            same_shape(value, got[key], f"{where}.{key}")
    elif isinstance(doc, list):
        assert isinstance(got, list) and len(got) == len(doc), f"{where}: {got!r} is not a list of {len(doc)}"
        for index, (a, b) in enumerate(zip(doc, got, strict=True)):
            same_shape(a, b, f"{where}[{index}]")
    elif isinstance(doc, bool) or doc is None or isinstance(doc, str):
        assert got == doc, f"{where}: {got!r} != {doc!r}"
    else:
        assert isinstance(got, int | float) and not isinstance(got, bool), f"{where}: {got!r} is not a number"


@pytest.fixture(scope="module")
def server(trained_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Versions 1 and 2 of the CNN (the canary example's), the README's ``serving.yaml`` examples."""
    repo = tmp_path_factory.mktemp("readme-repo")
    for name in ("linear", "mlp", "rnn"):
        shutil.copytree(trained_repo / name, repo / name)
    for version in (1, 2):
        copy_version(trained_repo / "cnn" / "1", repo, "cnn", version)
    config = readme_serving_yaml()
    # what the native example's "labels come from models/serving.yaml" assumes
    config["models"]["linear"] = {"labels": {"stable": 1}}
    (repo / "serving.yaml").write_text(yaml.safe_dump(config))
    with Server(repo, tmp_path_factory.mktemp("logs") / "server.log", workers=1) as srv:
        yield srv


def readme_serving_yaml() -> dict[str, Any]:
    """The README's canary and shadow example and its payload capture and feedback example, merged."""
    blocks = re.findall(r"```yaml\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    models: dict[str, Any] = {}
    for block in blocks:
        for name, settings in yaml.safe_load(block)["models"].items():
            if "versions" not in settings:  # the configuration section's block lists every key at once
                models.setdefault(name, {}).update(settings)
    assert {"cnn", "mlp", "rnn"} <= set(models), f"the README's yaml examples configure {sorted(models)}"
    return {"models": models}


def python_examples(text: str) -> list[tuple[int, str]]:
    """The line and code of every ``python`` block of ``text`` that runs on its own (it starts with its
    imports; the access control and TLS blocks continue others and need a token or a certificate)."""
    blocks = re.finditer(r"^```python\n(.*?)^```", text, re.S | re.M)
    found = [(text.count("\n", 0, m.start()) + 1, m[1]) for m in blocks]
    return [(line, code) for line, code in found if code.startswith(("import ", "from "))]


def pointed_at(code: str, server: Server) -> str:
    """``code`` with the README's default addresses replaced by the test server's."""
    http = server.url.split("//")[1]
    for default, port in (("8500", server.tf_grpc), ("8001", server.v2_grpc)):
        code = code.replace(f"127.0.0.1:{default}", port)
    return code.replace("localhost:3000", http).replace("127.0.0.1:3000", http)


def run(example: Example, server: Server, cwd: Path) -> tuple[int, str, list[int]]:
    """Run ``example`` as written (bash, pipefail); returns its exit code, output and every HTTP status."""
    script = pointed_at("\n".join([*example.setup, example.command]), server)
    wrapper = "set -o pipefail\ncurl() { command curl -w '%{stderr}status=%{http_code}\\n' \"$@\"; }\n"
    out = subprocess.run(
        ["bash", "-c", wrapper + script], cwd=cwd, capture_output=True, text=True, timeout=60
    )
    statuses = [int(s) for s in re.findall(r"status=(\d{3})", out.stderr)]
    return out.returncode, out.stdout, statuses


def test_readme_lists_runnable_examples() -> None:
    """The parser finds the examples this module is about (an empty list would pass every other check)."""
    found = examples((ROOT / "README.md").read_text())
    assert len(found) >= 15, [e.command for e in found]
    assert any("/v2/models/linear/infer" in e.command for e in found)
    assert any(e.setup and "$IMG" in e.command for e in found)


def test_every_self_contained_python_example_runs(server: Server) -> None:
    """The Python client examples (ours, TF Serving's gRPC stub, tritonclient over HTTP and gRPC,
    BentoML's client) run to the end against the server; what they print is not empty."""
    found = python_examples((ROOT / "README.md").read_text())
    assert len(found) >= 5, [line for line, _ in found]
    failures = []
    for line, code in found:
        out = subprocess.run([sys.executable, "-c", pointed_at(code, server)], capture_output=True, text=True,
                             cwd=ROOT, timeout=120)  # fmt: skip
        if out.returncode != 0 or ("print(" in code and not out.stdout.strip()):
            failures.append(
                f"README.md:{line}: exit {out.returncode}\n{out.stdout[-500:]}{out.stderr[-1500:]}"
            )
    assert not failures, "\n".join(failures)


def test_every_readme_curl_example_answers_as_shown(server: Server, tmp_path: Path) -> None:
    (tmp_path / "models").symlink_to(server.repo)  # the examples read models/cnn/1/metadata.json
    failures: list[str] = []
    for example in examples((ROOT / "README.md").read_text()):
        code, output, statuses = run(example, server, tmp_path)
        where = f"README.md:{example.line} {example.command}"
        try:
            check(example, code, output, statuses)
        except AssertionError as error:
            failures.append(f"{where}\n  {error}\n  output: {output[:400]!r}")
        time.sleep(0.5)  # a user's pace: the feedback example reads what the one before it stored
    assert not failures, "\n".join(failures)


def check(example: Example, code: int, output: str, statuses: list[int]) -> None:
    """``example``'s outcome against what the README shows after it."""
    assert statuses, f"curl reported no HTTP status (exit {code})"
    shown = " ".join(example.shown)
    headers = [m for m in map(HEADER.match, example.shown) if m]
    if headers:
        lines = {line.strip().lower() for line in output.splitlines()}
        for match in headers:
            shown_line = match[3] or f"{match[1]}: {match[2]}"
            assert shown_line.lower() in lines, f"no '{shown_line}' line in the output"
        return
    status, body = 200, shown
    if match := STATUS_JSON.match(shown):
        status, body = int(match[1]), match[2]
    if body.startswith("{"):
        assert statuses[-1] == status, f"status {statuses[-1]}, the README shows {status}"
        same_shape(json.loads(body), json.loads(output))
        return
    assert code == 0 and all(200 <= s < 300 for s in statuses), f"exit {code}, statuses {statuses}"
