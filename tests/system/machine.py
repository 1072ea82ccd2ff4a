"""A Debian root booted under a real systemd with systemd-nspawn; commands run inside it with nsenter.

The cached root (tests/system/rootfs.sh) is the lower layer of an overlay, so every boot starts from
the same clean system and writes only to its own upper layer. The container has no network
(--private-network: the package must install offline) and the options that let its systemd enforce
a unit's sandbox: the unified cgroup hierarchy, and bpf() with CAP_BPF and CAP_NET_ADMIN, which
DeviceAllow= and IPAddress*= are made of.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Optional

from clarad.containment import own_cgroup
from tests.waiting import wait_for

PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class Machine:
    def __init__(self, root: Path, work: Path, binds: Mapping[str, Path]) -> None:
        """``root``: the cached root; ``work``: a directory for the overlay and the console log;
        ``binds``: path inside -> path here, mounted read-only."""
        self.root = root
        self.work = work
        self.binds = dict(binds)
        self.merged = work / "merged"
        self.console = work / "console.log"
        self.nspawn: Optional[subprocess.Popen[bytes]] = None
        self.leader = 0  # the container's PID 1, as this host sees it
        self.cgroup: Optional[Path] = None

    def boot(self, timeout: float = 120) -> "Machine":
        for name in ("upper", "overlay-work", "merged"):
            (self.work / name).mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                        f"lowerdir={self.root},upperdir={self.work / 'upper'},workdir={self.work / 'overlay-work'}",
                        str(self.merged)], check=True, capture_output=True)
        # nspawn puts the container in "payload" under its own cgroup (--keep-unit): a cgroup of its
        # own, or two containers started from one cgroup (two runs at once) would share one tree
        self.cgroup = own_cgroup() / f"clarad-{self.work.name}"
        self.cgroup.mkdir()
        argv = ["sh", "-c", 'echo $$ > "$0/cgroup.procs" && exec "$@"', str(self.cgroup)]
        argv += ["systemd-nspawn", "--quiet", "-D", str(self.merged), "--boot", "--private-network",
                "--console=read-only", "--register=no", "--keep-unit", "--system-call-filter=bpf",
                "--capability=CAP_BPF,CAP_NET_ADMIN", "--machine=clarad-test"]
        argv += [f"--bind-ro={outside}:{inside}" for inside, outside in self.binds.items()]
        env = {**os.environ, "SYSTEMD_NSPAWN_UNIFIED_HIERARCHY": "1"}
        with open(self.console, "wb") as console:
            self.nspawn = subprocess.Popen(argv, stdout=console, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                           env=env)
        self.leader = wait_for(self._leader, 30, "systemd-nspawn to start the container's init")
        state = wait_for(self._booted, timeout, "the container to finish booting")
        if state != "running":
            failed = self.run("systemctl", "--failed", "--no-pager", check=False).stdout
            raise AssertionError(f"the container booted {state}:\n{failed}\n{self.console.read_text()[-3000:]}")
        return self

    def _booted(self) -> Optional[str]:
        """The state the boot ended in; None while the container's systemd does not answer yet
        ("offline": its private socket is not there yet)."""
        state = self.run("systemctl", "is-system-running", "--wait", check=False).stdout.strip()
        return None if state in ("", "offline") else state

    def _leader(self) -> int:
        assert self.nspawn is not None
        if self.nspawn.poll() is not None:
            raise AssertionError(f"systemd-nspawn exited with {self.nspawn.returncode}:\n{self.console.read_text()}")
        # nspawn's first child only sets up the namespaces and starts the container's init (its own
        # PID 1, systemd); wait for that one
        children = Path(f"/proc/{self.nspawn.pid}/task/{self.nspawn.pid}/children")
        for pid in children.read_text().split() if children.exists() else []:
            try:
                if Path(f"/proc/{pid}/comm").read_text().strip() == "systemd":
                    return int(pid)
            except OSError:
                continue
        return 0

    def run(self, *argv: str, user: Optional[str] = None, check: bool = True, input: Optional[str] = None,
            timeout: float = 180) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` inside, as root or as ``user``, with a clean environment."""
        inner: Sequence[str] = ["runuser", "-u", user, "--", *argv] if user else argv
        done = subprocess.run(["nsenter", "-t", str(self.leader), "-a", "env", "-i", f"PATH={PATH}", "LANG=C.UTF-8",
                               *inner], capture_output=True, text=True, input=input, timeout=timeout)
        if check and done.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} exited with {done.returncode}:\n{done.stdout}{done.stderr}")
        return done

    def sh(self, script: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
        return self.run("sh", "-ec", script, **kwargs)  # type: ignore[arg-type]

    def write(self, path: str, text: str, mode: int = 0o644) -> None:
        """Write a file inside (through the overlay: the container sees it at once)."""
        target = self.merged / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        target.chmod(mode)

    def poweroff(self, timeout: float = 120) -> None:
        """An orderly shutdown (SIGTERM makes nspawn ask the container's systemd to power off)."""
        if self.nspawn is not None and self.nspawn.poll() is None:
            self.nspawn.send_signal(signal.SIGTERM)
            try:
                self.nspawn.wait(timeout)
            except subprocess.TimeoutExpired:
                self.nspawn.kill()
                self.nspawn.wait()
        if self.cgroup is not None and self.cgroup.exists():
            for path in sorted(self.cgroup.rglob("*"), key=lambda p: len(p.parts), reverse=True) + [self.cgroup]:
                if path.is_dir():
                    path.rmdir()  # cgroups are removed empty and deepest first
        # the container's last processes may hold the overlay for a moment after nspawn exits
        wait_for(lambda: not os.path.ismount(self.merged)
                 or subprocess.run(["umount", str(self.merged)], capture_output=True).returncode == 0,
                 30, f"{self.merged} to unmount")
