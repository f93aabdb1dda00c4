"""Model and version names never reach outside the repository, and nothing is ever loaded through a
code-executing format (pickle and friends)."""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from service.dataplane import DataPlane, InferenceRequest
from service.errors import InvalidInput, NotFound
from service.models.registry import ModelRegistry
from service.models.repository import scan, valid_model_name
from service.protocols.common import parse_version
from service.settings import Settings
from tests.conftest import ROOT
from tests.service.modelfactory import write_scale_version

HOSTILE_NAMES = [
    "../m", "../../etc/passwd", "/etc/passwd", "m/../m", "./m", "m\x00", "\x00", "..", ".", "m/",
    "ｍ",  # FULLWIDTH LATIN SMALL LETTER M: NFKC-normalises to "m"
    "m\u0301", "\u212a",  # a combining accent; KELVIN SIGN (NFKC: "K")
    "%2e%2e%2fm", "..\\m", "C:\\m", "m" * 300, "\u202em",
]  # fmt: skip
"""Names a request may carry; none of them may reach a model or the file system."""

_opened: list[str] = []
_watching = False


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if _watching and event in {"open", "os.listdir", "os.scandir", "os.chdir", "os.mkdir", "os.remove"}:
        _opened.append(str(args[0]) if args else "")


sys.addaudithook(_audit)


@pytest.fixture(scope="module")
def dataplane(tmp_path_factory: pytest.TempPathFactory) -> Any:
    repo = tmp_path_factory.mktemp("repo")
    write_scale_version(repo, "m", 1, 1.0)
    return repo


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_hostile_model_names_are_404_or_400_without_touching_the_file_system(
    dataplane: Path, name: str
) -> None:
    global _watching

    async def main() -> None:
        global _watching
        dp = DataPlane(ModelRegistry(Settings(repository=dataplane, poll_interval_s=0)))
        await dp.registry.start()
        _opened.clear()
        _watching = True
        try:
            with pytest.raises((NotFound, InvalidInput)):
                await dp.infer(InferenceRequest(name, {None: np.ones((1, 4), np.float32)}, "test"))
            with pytest.raises((NotFound, InvalidInput)):
                dp.find(name)
            with pytest.raises((NotFound, InvalidInput)):
                dp.find("m", label=name)
        finally:
            _watching = False
        assert _opened == [], f"a request for {name!r} touched the file system: {_opened}"
        assert (
            await dp.infer(InferenceRequest("m", {None: np.ones((1, 4), np.float32)}, "test"))
        ).version == 1
        await dp.registry.close()

    asyncio.run(main())


@pytest.mark.parametrize("raw", ["../1", "1/..", "-1", "0", "1\x00", "١", "１", "1e3", " 1", "9" * 400])
def test_hostile_versions_are_400(raw: str) -> None:
    with pytest.raises(InvalidInput):
        parse_version(raw)


def test_the_repository_scan_ignores_directory_names_no_request_should_reach(tmp_path: Path) -> None:
    bad = ["ｍ", "m\u0301", "\u212a", "-m", ".m", "m m", "m\n", "é", "..m"]
    for name in ["ok", "ok.v2", "ok-3", "_x", *bad]:
        write_scale_version(tmp_path, name, 1, 1.0)
    assert sorted(scan(tmp_path).versions) == ["_x", "ok", "ok-3", "ok.v2"]
    assert not any(valid_model_name(n) for n in [*bad, *HOSTILE_NAMES] if len(n) < 256)  # longer: 400


# ----- no code-executing formats ----------------------------------------------------------------------
FORBIDDEN = {
    "pickle": r"\b(c?pickle|dill|shelve|joblib|cloudpickle)\b",
    "marshal": r"\bmarshal\b",
    "allow_pickle=True": r"allow_pickle\s*=\s*True",
    "torch.load": r"\btorch\.load\b",
    "yaml.load without SafeLoader": r"\byaml\.(unsafe_load|full_load|load)\((?![^)]*SafeLoader)",
    "eval/exec": r"(?<![\w.])(eval|exec)\(",
    "safe_mode=False": r"safe_mode\s*=\s*False",
}


@pytest.mark.parametrize("what", sorted(FORBIDDEN))
def test_nothing_is_loaded_through_a_code_executing_format(what: str) -> None:
    hits = [
        f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
        for path in sorted((ROOT / "service").rglob("*.py"))
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if re.search(FORBIDDEN[what], line)
    ]
    assert hits == [], f"{what} in service/: {hits}"


def test_the_keras_runtime_loads_with_safe_mode() -> None:
    source = (ROOT / "service" / "runtimes" / "keras.py").read_text()
    calls = re.findall(r"load_model\(([^)]*)\)", source)
    assert calls and all("safe_mode=True" in c for c in calls), calls
