"""The Dockerfile installs the dependencies before it copies the code, and installs the same ones as
``pip install '.[extra]'`` would (``deploy/tfprotos.py requires``). The rebuild this saves is measured
by the container tests (README, "Container image"); these checks need no podman."""

from __future__ import annotations

import importlib.metadata
import re
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from deploy.tfprotos import requires
from tests.deploy.podman import ROOT

PROJECT = "keras-serving"


def what_pip_installs(extra: str) -> set[str]:
    """The requirements ``pip install '.[extra]'`` resolves from the installed project's metadata, the
    project's own extras expanded, as ``name[extras]specifier`` strings."""
    found: set[str] = set()
    pending, seen = [extra], set()
    while pending:
        wanted = pending.pop()
        seen.add(wanted)
        for line in importlib.metadata.requires(PROJECT) or []:
            requirement = Requirement(line)
            if requirement.marker is not None and not requirement.marker.evaluate({"extra": wanted}):
                continue
            if requirement.marker is None and wanted != extra:
                continue  # the core requirements, counted once
            if requirement.name == PROJECT:
                pending.extend(e for e in requirement.extras if e not in seen)
                continue
            found.add(_normal(requirement))
    return found


def _normal(requirement: Requirement) -> str:
    extras = f"[{','.join(sorted(requirement.extras))}]" if requirement.extras else ""
    return f"{requirement.name}{extras}{requirement.specifier}"


@pytest.mark.parametrize("extra", ["jax", "training"])
def test_requires_lists_what_pip_would_install_with_the_extra(extra: str) -> None:
    listed = requires([extra])
    assert len(listed) == len(set(listed)), listed  # no repeats
    assert not [r for r in listed if r.startswith(PROJECT)], listed  # the project's own extras expanded
    assert {_normal(Requirement(r)) for r in listed} == what_pip_installs(extra)


def test_requires_names_the_extras_when_one_is_unknown() -> None:
    with pytest.raises(SystemExit, match=r"'gpus' is not an extra .*extras: .*jax"):
        requires(["gpus"])


def _stages(dockerfile: Path) -> dict[str, list[str]]:
    """Each ``FROM ... AS name`` stage's instructions (continuation lines joined)."""
    stages: dict[str, list[str]] = {}
    current: list[str] = []
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        stage = re.match(r"FROM \S+ AS (\S+)", line)
        if stage:
            current = stages.setdefault(stage.group(1), [])
        current.append(line)
    return stages


@pytest.mark.parametrize(("stage", "extra"), [("serving", "jax"), ("training", "training")])
def test_each_image_installs_its_dependencies_before_it_copies_the_code(stage: str, extra: str) -> None:
    """A change to the code or the README must not invalidate the layer of the dependencies."""
    stages = _stages(ROOT / "deploy" / "Dockerfile")
    steps = stages[stage]
    install = next(i for i, s in enumerate(steps) if f"tfprotos.py requires {extra}" in s)
    copies = [i for i, s in enumerate(steps) if re.match(r"COPY (README\.md|service|training)\b", s)]
    assert copies and min(copies) > install, steps
    project = [s for s in steps if "pip install --no-deps ./" in s]
    assert len(project) == 1 and steps.index(project[0]) > max(copies), steps  # the code, without deps
    base = stages["base"]
    assert not [s for s in base if re.match(r"COPY .*(README\.md|service|training)", s)], base
