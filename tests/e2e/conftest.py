from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest

from clarad import containment, leftovers
from tests.e2e.clarad_process import STARTED


@pytest.fixture(scope="session", autouse=True)
def no_clarad_outlives_the_tests() -> Iterator[None]:
    """A test that fails half-way must not leave its clarad (and its tritonservers) running, nor what
    a clarad killed for good leaves for a next start that never comes: shared memory, the Python
    backend's /tmp directories, empty operator cgroups."""
    yield
    for daemon in STARTED:
        daemon.stop_if_running()
    for daemon in STARTED:  # a tritonserver killed with its clarad gone for good leaves these
        leftovers.remove_shm(leftovers.shm_prefix(daemon.state))
    leftovers.remove_python_envs()
    with contextlib.suppress(OSError):
        parent = containment.own_cgroup()
        for daemon in STARTED:
            for scope in parent.glob(f"{containment.scope_prefix(daemon.state)}*"):
                with contextlib.suppress(OSError):
                    scope.rmdir()  # refused while a process is still in it
