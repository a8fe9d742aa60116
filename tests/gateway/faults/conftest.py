from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.gateway.faults.helpers import DyingSSE


@pytest.fixture
def dying_upstream() -> Iterator[DyingSSE]:
    server = DyingSSE(chunks=2)
    yield server
    server.stop()
