"""clarad's package installed in a booted Machine, used the way an operator of the box would:
systemctl, journalctl, dpkg, and drops made by a member of group clara."""

from __future__ import annotations

import json
from typing import Any, Optional

from tests.system.machine import Machine
from tests.waiting import wait_for

DEB = "/srv/clarad-test/clarad.deb"  # where the tests' files are mounted inside
DEMO = "/srv/clarad-test/demo"
E2E = "/srv/clarad-test/e2e"
DROPPER = "dropper"  # a member of group clara, as the README asks of whoever drops files
CONFIG = "/etc/clara/clarad.toml"
PRISTINE_CONFIG = "/root/clarad.toml.installed"
DROP_IN = "/etc/systemd/system/clarad.service.d"
PYTHON = "/opt/clarad/bin/python"


class Appliance:
    def __init__(self, machine: Machine) -> None:
        self.m = machine

    # -- the package ----------------------------------------------------------------------------

    def install(self) -> str:
        """dpkg -i the package (its Depends are in the root already: no network inside); its output."""
        done = self.m.run("dpkg", "-i", DEB)
        self.m.run("cp", CONFIG, PRISTINE_CONFIG)
        if self.m.run("getent", "passwd", DROPPER, check=False).returncode != 0:
            self.m.run("useradd", "--no-create-home", "--gid", "clara", DROPPER)
        return done.stdout + done.stderr

    def installed(self) -> bool:
        return "install ok installed" in self.m.run("dpkg-query", "-W", "-f=${Status}", "clarad", check=False).stdout

    # -- the unit -------------------------------------------------------------------------------

    def systemctl(self, *args: str, check: bool = True) -> str:
        return self.m.run("systemctl", *args, check=check).stdout.strip()

    def show(self, *properties: str) -> dict[str, str]:
        text = self.systemctl("show", "clarad", *(f"--property={name}" for name in properties))
        return dict(line.split("=", 1) for line in text.splitlines())

    def baseline(self) -> None:
        """The unit as installed (no drop-in, the installed settings) and running."""
        restart = False
        if self.m.run("test", "-e", DROP_IN, check=False).returncode == 0:
            self.m.run("rm", "-rf", DROP_IN)
            self.systemctl("daemon-reload")
            restart = True
        if self.m.run("cmp", "-s", CONFIG, PRISTINE_CONFIG, check=False).returncode != 0:
            self.m.run("cp", PRISTINE_CONFIG, CONFIG)
            restart = True
        if restart or self.systemctl("is-active", "clarad", check=False) != "active":
            self.systemctl("reset-failed", "clarad", check=False)
            self.systemctl("restart", "clarad")

    def drop_in(self, text: str) -> None:
        self.m.write(f"{DROP_IN}/test.conf", text)
        self.systemctl("daemon-reload")
        self.systemctl("restart", "clarad")

    def journal(self, *args: str) -> list[dict[str, Any]]:
        """clarad.service's journal entries (`journalctl -o json`), oldest first."""
        text = self.m.run("journalctl", "-u", "clarad", "-o", "json", "--no-pager", *args).stdout
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def processes(self, user: str = "clara") -> list[str]:
        """'pid command line' of every process of ``user`` inside."""
        script = ("import os, pwd\nuid = pwd.getpwnam(%r).pw_uid\n"
                  "for pid in filter(str.isdigit, os.listdir('/proc')):\n"
                  "    try:\n"
                  "        status = open(f'/proc/{pid}/status').read()\n"
                  "        cmd = open(f'/proc/{pid}/cmdline', 'rb').read().replace(b'\\0', b' ').decode()\n"
                  "    except OSError:\n"
                  "        continue\n"
                  "    if any(l.split()[1:2] == [str(uid)] for l in status.splitlines() if l.startswith('Uid:')):\n"
                  "        print(pid, cmd)\n") % user
        return self.m.run("python3.11", "-c", script).stdout.splitlines()

    # -- clarad's own command and drops ---------------------------------------------------------

    def clarad(self, *args: str, user: Optional[str] = DROPPER) -> Any:
        """`clarad ARGS --json` as a member of group clara; its answer."""
        return json.loads(self.m.run("clarad", *args, "--json", user=user).stdout)

    def drop(self, source: str, folder: str, name: Optional[str] = None) -> None:
        """Copy ``source`` (a path inside) next to the inbox, then rename it into inbox/``folder``,
        as DROPPER. Group-writable: clarad moves a dropped directory on, which takes write
        permission on the directory itself (its ".." changes)."""
        name = name or source.rstrip("/").rsplit("/", 1)[-1]
        self.m.run("sh", "-ec", 'd=$(mktemp -d /var/tmp/drop.XXXXXX); cp -r "$1" "$d/$3"; chmod -R g+w "$d/$3"; '
                   'mv "$d/$3" "/var/lib/clara/inbox/$2/"; rmdir "$d"', "drop", source, folder, name, user=DROPPER)

    def drop_text(self, text: str, folder: str, name: str) -> None:
        self.m.write(f"/var/tmp/{name}.source", text)
        self.drop(f"/var/tmp/{name}.source", folder, name)

    def job_ids(self) -> set[str]:
        return {job["id"] for job in self.clarad("jobs", "list")}

    def wait_job(self, known: set[str], timeout: float = 180) -> dict[str, Any]:
        """The job that is not in ``known``, once it has stopped."""
        job_id: str = wait_for(lambda: next(iter(self.job_ids() - known), ""), 60, "a new job")
        return wait_for(lambda: (job := self.clarad("jobs", "show", job_id))["state"] == "STOPPED" and job,
                        timeout, f"job {job_id} to stop")

    def taken(self, folder: str, name: str) -> bool:
        return self.m.run("test", "-e", f"/var/lib/clara/inbox/{folder}/{name}", check=False).returncode != 0

    def ensure_model(self, source: str, name: str) -> None:
        """``name`` in the repository (a drop of the same content again changes nothing)."""
        self.drop(source, "models", name)
        wait_for(lambda: self.taken("models", name), 120, f"model {name} to be taken")
        assert name in {model["name"] for model in self.clarad("models", "list")}, f"model {name} was rejected"

    def ensure_pipeline(self, text: str, name: str) -> None:
        self.drop_text(text, "pipelines", f"{name}.yaml")
        wait_for(lambda: self.taken("pipelines", f"{name}.yaml"), 60, f"pipeline {name} to be taken")
        assert name in {p["name"] for p in self.clarad("pipelines", "list")}, f"pipeline {name} was rejected"

    def read(self, path: str) -> str:
        return self.m.run("cat", path).stdout
