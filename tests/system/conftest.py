"""The real-systemd suite: one Debian 12 booted with systemd-nspawn for the session, the package
installed in it; every test starts from the unit as installed, running (``appliance``).

Run it with `bash tests/system/run.sh`, which builds the package and the cached root and passes
them here as CLARAD_SYSTEM_DEB and CLARAD_SYSTEM_ROOT.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.system.appliance import DEB, DEMO, E2E, Appliance
from tests.system.machine import Machine

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def machine() -> Iterator[Machine]:
    deb, root = os.environ.get("CLARAD_SYSTEM_DEB"), os.environ.get("CLARAD_SYSTEM_ROOT")
    if not deb or not root:
        pytest.fail("CLARAD_SYSTEM_DEB and CLARAD_SYSTEM_ROOT are not set: run `bash tests/system/run.sh`, "
                    "which builds the package and the root and sets them", pytrace=False)
    # not under pytest's basetemp, which another pytest run may prune while this one's overlay is mounted
    work = Path(tempfile.mkdtemp(prefix="clarad-machine-"))
    booted = Machine(Path(root), work, {DEB: Path(deb), DEMO: REPO / "docs" / "demo", E2E: REPO / "tests" / "e2e"})
    try:
        yield booted.boot()
    finally:
        booted.poweroff()
        shutil.rmtree(work)


@pytest.fixture(scope="session")
def installation(machine: Machine) -> str:
    """What `dpkg -i` said when it installed the package the first time."""
    return Appliance(machine).install()


@pytest.fixture
def appliance(machine: Machine, installation: str) -> Appliance:
    appliance = Appliance(machine)
    if not appliance.installed():  # a test that purged it failed before installing it again
        appliance.install()
    appliance.baseline()
    return appliance
