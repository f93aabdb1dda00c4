"""Every BentoML patch checks what it patches: it applies to the pinned BentoML, and skips loudly otherwise."""

from __future__ import annotations

import logging
import socket
import sys
import types

import pytest
from prometheus_client import CollectorRegistry, Gauge

from service.bento import patches


def test_every_patch_applies_to_the_installed_bentoml() -> None:
    for patch in patches.PATCHES:
        assert patches.check_bentoml(patch) is None, patch
        assert patches.REQUIRES[patch] and patches.COST[patch]


def test_a_missing_attribute_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(
        patches.REQUIRES,
        "timeout_middleware",
        ["bentoml._internal.server.http.traffic:TimeoutMiddleware.gone"],
    )
    problem = patches.check_bentoml("timeout_middleware")
    assert problem is not None and "TimeoutMiddleware.gone" in problem and "BentoML 1.4" in problem


def test_a_patch_that_cannot_apply_is_skipped_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from bentoml._internal.server.http import traffic

    monkeypatch.setitem(patches.REQUIRES, "timeout_middleware", ["no_such_module_here:thing"])
    monkeypatch.setitem(patches.ACTIVE, "timeout_middleware", False)
    before = traffic.TimeoutMiddleware.__call__
    with caplog.at_level(logging.WARNING, logger="service.bento"):
        patches.patch_timeout_middleware()
    assert traffic.TimeoutMiddleware.__call__ is before, "nothing is half-applied"
    assert patches.ACTIVE["timeout_middleware"] is False
    assert "BentoML patch timeout_middleware not applied" in caplog.text
    assert "no_such_module_here:thing" in caplog.text and "effect:" in caplog.text


def test_report_patches_sets_one_gauge_per_patch(monkeypatch: pytest.MonkeyPatch) -> None:
    registry = CollectorRegistry()
    gauge = Gauge("serving_bentoml_patch_active", "test", ["patch"], registry=registry)
    monkeypatch.setattr(
        patches,
        "ACTIVE",
        {"timeout_middleware": True, "listen_per_worker": False, "fast_lane": True, "batch_accept": True,
         "skip_answered_body": False, "direct_body": True},
    )  # fmt: skip
    patches.report_patches(gauge)
    values = {
        p: registry.get_sample_value("serving_bentoml_patch_active", {"patch": p}) for p in patches.PATCHES
    }
    assert values == {
        "timeout_middleware": 1.0,
        "listen_per_worker": 0.0,
        "fast_lane": 1.0,
        "batch_accept": 1.0,
        "skip_answered_body": 0.0,
        "direct_body": 1.0,
    }


def test_worker_on_the_shared_socket_says_so(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A worker whose inherited socket already listens (the serve side did not bind-only) keeps it and logs."""
    with socket.socket() as shared:
        shared.bind(("127.0.0.1", 0))
        shared.listen(8)
        main = types.ModuleType("__main__")
        main.__spec__ = types.SimpleNamespace(name=patches.WORKER_MODULE)  # type: ignore[assignment]
        monkeypatch.setitem(sys.modules, "__main__", main)
        monkeypatch.setattr(sys, "argv", ["worker", "--fd", str(shared.fileno())])
        monkeypatch.setitem(patches.ACTIVE, "listen_per_worker", True)
        with caplog.at_level(logging.WARNING, logger="service.bento"):
            assert patches.take_own_listener() is False
        assert patches.ACTIVE["listen_per_worker"] is False
        assert "shared HTTP socket" in caplog.text
        assert shared.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN), (
            "the shared socket is left as it was"
        )


def test_outside_a_worker_nothing_is_taken(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "argv", ["pytest"])
    assert patches.take_own_listener() is False
