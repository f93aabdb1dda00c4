"""The README stays true to the code: every setting and every metric is documented."""

from __future__ import annotations

import re

from service.settings import Settings
from tests.conftest import ROOT

README = (ROOT / "README.md").read_text()


def test_every_setting_is_in_the_configuration_table() -> None:
    documented = set(re.findall(r"^\| `(SERVING_[A-Z0-9_]+)` \|", README, flags=re.M))
    expected = {f"SERVING_{name.upper()}" for name in Settings.model_fields}
    assert documented == expected, f"missing: {expected - documented}, stale: {documented - expected}"


def test_every_metric_is_in_the_metrics_table() -> None:
    source = (ROOT / "service" / "metrics.py").read_text()
    names = set(re.findall(r'"(serving_[a-z_]+)"', source))
    assert len(names) >= 12
    for name in names:
        assert f"`{name}" in README, f"metric {name} is not documented in README.md"
