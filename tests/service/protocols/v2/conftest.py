"""What the V2 end-to-end modules share."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.server import Server
from tests.service.modelfactory import write_demo_repo


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A real two-worker server over the demo repository, one per test module (a module may define its
    own ``server`` instead)."""
    repo = write_demo_repo(tmp_path_factory.mktemp("repo"))
    log = tmp_path_factory.mktemp("logs") / "server.log"
    with Server(repo, log, workers=2) as srv:
        yield srv
