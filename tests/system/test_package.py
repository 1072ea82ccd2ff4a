"""The Debian package: what it holds, lintian's verdict, install, remove and purge."""

from __future__ import annotations

import os
import re
import subprocess

from tests.system.appliance import CONFIG, DEMO, Appliance

DEB = os.environ.get("CLARAD_SYSTEM_DEB", "")


def contents() -> list[str]:
    listing = subprocess.run(["dpkg-deb", "--contents", DEB], capture_output=True, text=True, check=True).stdout
    return [line.split(None, 5)[5].split(" -> ")[0].lstrip(".") for line in listing.splitlines()]


def test_the_package_holds_nothing_only_a_build_or_a_test_needs() -> None:
    paths = contents()
    site = "/opt/clarad/lib/python3.11/site-packages/"
    assert f"{site}clarad/daemon.py" in paths and f"{site}pytriton/tritonserver/bin/tritonserver" in paths
    assert not [p for p in paths if p.startswith((f"{site}pip/", f"{site}setuptools/", f"{site}pkg_resources/"))]
    assert not [p for p in paths if "/tests/" in p or "__pycache__" in p or p.endswith(".pyc")]
    stubs = {p.split("/python_backend_stubs/")[1].split("/")[0] for p in paths if "/python_backend_stubs/" in p} - {""}
    assert stubs == {"3.11"}
    assert {p.rsplit("/", 1)[1] for p in paths if re.fullmatch(r"/opt/clarad/bin/[^/]+", p)} == \
        {"clarad", "python", "python3", "python3.11"}
    # nvidia-pytriton's own Python library's dependencies: clarad never imports pytriton
    assert not [p for p in paths if p.startswith(tuple(f"{site}{name}/" for name in ("gevent", "aiohttp", "zmq", "rich")))]
    assert "/usr/share/man/man1/clarad.1.gz" in paths
    assert "/usr/share/doc/clarad/README.md" in paths  # uncompressed: the unit's Documentation= opens it


def test_lintian_reports_no_tag_that_the_overrides_do_not_explain() -> None:
    done = subprocess.run(["lintian", "--display-info", "--tag-display-limit", "0", DEB], capture_output=True, text=True)
    tags = [line for line in done.stdout.splitlines() if re.match(r"[EWIXP]: ", line)]
    assert tags == [], "\n".join(tags)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_package_installs_without_a_warning(installation: str, appliance: Appliance) -> None:
    assert "Setting up clarad" in installation
    assert not [line for line in installation.splitlines() if "warn" in line.lower()], installation
    assert appliance.systemctl("is-enabled", "clarad") == "enabled"
    home = appliance.m.run("getent", "passwd", "clara").stdout.split(":")[5]
    assert home == "/var/lib/clara"
    assert appliance.m.run("stat", "-c", "%U:%G %a", "/var/lib/clara").stdout.strip() == "clara:clara 750"


def test_remove_keeps_data_and_settings_and_purge_removes_them(appliance: Appliance) -> None:
    appliance.ensure_model(f"{DEMO}/models/affine", "affine")
    appliance.m.write(CONFIG, "job_timeout_seconds = 300.0\n")
    appliance.m.run("dpkg", "--remove", "clarad")
    assert appliance.processes() == []
    for gone in ("/opt/clarad", "/usr/bin/clarad", "/lib/systemd/system/clarad.service"):
        assert appliance.m.run("test", "-e", gone, check=False).returncode != 0, f"{gone} is left after remove"
    assert appliance.m.run("test", "-d", "/var/lib/clara/models/affine", check=False).returncode == 0
    assert appliance.read(CONFIG) == "job_timeout_seconds = 300.0\n"

    appliance.m.run("dpkg", "--purge", "clarad")
    for gone in ("/var/lib/clara", "/etc/clara", "/usr/share/doc/clarad", "/opt/clarad"):
        assert appliance.m.run("test", "-e", gone, check=False).returncode != 0, f"{gone} is left after purge"
    assert appliance.m.run("getent", "passwd", "clara", check=False).returncode == 0  # system users stay
    assert appliance.systemctl("is-enabled", "clarad", check=False) not in ("enabled", "disabled")

    again = appliance.install()
    assert not [line for line in again.splitlines() if "warn" in line.lower()], again
    assert appliance.systemctl("is-active", "clarad") == "active"
