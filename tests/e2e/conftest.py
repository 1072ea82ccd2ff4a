from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.clarad_process import STARTED


@pytest.fixture(scope="session", autouse=True)
def no_clarad_outlives_the_tests() -> Iterator[None]:
    """A test that fails half-way must not leave its clarad (and its tritonservers) running."""
    yield
    for daemon in STARTED:
        daemon.stop_if_running()
