"""The README stays true to the code: every setting (name and default) and every metric is documented."""

from __future__ import annotations

import json
import re
from typing import Any

from service.settings import Settings
from tests.conftest import ROOT

README = (ROOT / "README.md").read_text()


def test_every_setting_is_in_the_configuration_table() -> None:
    documented = set(re.findall(r"^\| `(SERVING_[A-Z0-9_]+)` \|", README, flags=re.M))
    expected = {f"SERVING_{name.upper()}" for name in Settings.model_fields}
    assert documented == expected, f"missing: {expected - documented}, stale: {documented - expected}"


def _rendered(default: Any) -> str:
    """A default as the configuration table writes it: lists as compact JSON, the rest as ``str``."""
    return json.dumps(default, separators=(",", ":")) if isinstance(default, list) else str(default)


def test_configuration_table_defaults_match_settings() -> None:
    rows = dict(re.findall(r"^\| `(SERVING_[A-Z0-9_]+)` \| `([^`]*)` \|", README, flags=re.M))
    for name, field in Settings.model_fields.items():
        key = f"SERVING_{name.upper()}"
        assert rows.get(key) == _rendered(field.default), f"{key}: README says {rows.get(key)!r}"


def test_every_metric_is_in_the_metrics_table() -> None:
    source = (ROOT / "service" / "metrics.py").read_text()
    names = set(re.findall(r'"(serving_[a-z_]+)"', source))
    assert len(names) >= 12
    for name in names:
        assert f"`{name}" in README, f"metric {name} is not documented in README.md"
