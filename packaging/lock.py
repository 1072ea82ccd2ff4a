"""Write the pinned, hashed requirements the Debian package is built from.

    .venv-test/bin/python packaging/lock.py [PYTHON3.10 PYTHON3.11 PYTHON3.12]

(pip >= 23 and PyPI or a mirror; the interpreters default to python3.X on PATH) writespackaging/requirements.lock (what goes into /opt/clarad: clarad's dependencies and its
``triton`` extra) and packaging/build-requirements.lock (pip and setuptools for building clarad's
own wheel). debian/rules installs them with ``--require-hashes --no-deps --only-binary=:all:``, so
two builds install the same files, and a file that changed on the index stops the build.

pip resolves once per Debian or Ubuntu release the package is built for (its python3 and glibc)
and per architecture, run by an interpreter of that release's Python version so that environment
markers are evaluated for it (``--python-version`` alone would evaluate them for this one), each constrained to the versions of the first, so every release gets the same
versions; a requirement only some releases need carries a ``python_version`` marker. Each line
lists the hash of every wheel chosen across those resolutions.

nvidia-pytriton is locked without its dependencies: clarad runs only the tritonserver binary and
Python backend its wheel carries, never the pytriton Python library (whose own dependencies,
gevent, aiohttp, zmq, typer and rich among them, are about a third of the files).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import tomllib

HERE = Path(__file__).resolve().parent
PROJECT = HERE.parent
WITHOUT_DEPENDENCIES = {"nvidia-pytriton"}
# (release, python3 version, glibc): the releases debian/rules may run on, oldest Python first, since
# its resolution constrains the others (a version that left Python 3.10 behind must not be chosen).
RELEASES = [("ubuntu-22.04", "3.10", 35), ("debian-12", "3.11", 36), ("ubuntu-24.04", "3.12", 39)]
ARCHITECTURES = ["x86_64", "aarch64"]  # the control file's amd64 and arm64


@dataclass
class Pin:
    version: str
    hashes: set[str] = field(default_factory=set)
    pythons: set[str] = field(default_factory=set)


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def platforms(glibc: int, arch: str) -> list[str]:
    """pip matches --platform tags exactly: list every manylinux tag a glibc accepts, best first."""
    legacy = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}
    tags = []
    for minor in range(glibc, 4, -1):
        tags.append(f"manylinux_2_{minor}_{arch}")
        if minor in legacy:
            tags.append(f"{legacy[minor]}_{arch}")
    return tags


def resolve(requirements: list[str], python: Path, glibc: int, arch: str, constraints: dict[str, Pin],
            with_dependencies: bool) -> dict[str, tuple[str, str]]:
    """name -> (version, sha256) of what pip, run by ``python``, would install for that target."""
    with tempfile.TemporaryDirectory() as tmp:
        pins = Path(tmp, "constraints.txt")
        pins.write_text("".join(f"{name}=={pin.version}\n" for name, pin in constraints.items()))
        report = Path(tmp, "report.json")
        argv = [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--dry-run",
                "--ignore-installed", "--only-binary=:all:", "--report", str(report), "-c", str(pins)]
        argv += [f"--platform={tag}" for tag in platforms(glibc, arch)]
        argv += [] if with_dependencies else ["--no-deps"]
        subprocess.run(argv + requirements, check=True)
        chosen = json.loads(report.read_text())["install"]
    return {normalize(item["metadata"]["name"]): (item["metadata"]["version"],
                                                   item["download_info"]["archive_info"]["hashes"]["sha256"])
            for item in chosen}


def runtime_requirements() -> tuple[list[str], list[str]]:
    """clarad's dependencies and ``triton`` extra: (resolved with dependencies, without)."""
    project = tomllib.loads((PROJECT / "pyproject.toml").read_text())["project"]
    every = project["dependencies"] + project["optional-dependencies"]["triton"]
    alone = [req for req in every if normalize(re.split(r"[<>=!~;\[ ]", req, maxsplit=1)[0]) in WITHOUT_DEPENDENCIES]
    return [req for req in every if req not in alone], alone


def interpreters(given: list[str]) -> dict[str, Path]:
    """Python version -> an interpreter of it, for every release."""
    found: dict[str, Path] = {}
    for candidate in given or [f"python{python}" for _, python, _ in RELEASES]:
        path = shutil.which(candidate)
        run = subprocess.run([path, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                             capture_output=True, text=True) if path else None
        if path is None or run is None or run.returncode != 0:
            raise SystemExit(f"{candidate}: not a Python interpreter here; pass one per release: "
                             + ", ".join(f"Python {python} ({release})" for release, python, _ in RELEASES))
        found[run.stdout.strip()] = Path(path)
    missing = [f"Python {python} ({release})" for release, python, _ in RELEASES if python not in found]
    if missing:
        raise SystemExit(f"no interpreter for {', '.join(missing)}: pass one per release on the command line")
    return found


def lock(groups: list[tuple[list[str], bool]], targets: list[tuple[str, Path, int, str]]) -> dict[str, Pin]:
    pins: dict[str, Pin] = {}
    for python, interpreter, glibc, arch in targets:
        for requirements, with_dependencies in groups:
            chosen = resolve(requirements, interpreter, glibc, arch, pins, with_dependencies)
            for name, (version, sha256) in chosen.items():
                pin = pins.setdefault(name, Pin(version))
                if pin.version != version:  # the constraints make this impossible; pip changed if it happens
                    raise SystemExit(f"{name}: {version} for Python {python} on {arch}, {pin.version} elsewhere")
                pin.hashes.add(sha256)
                pin.pythons.add(python)
    return pins


def render(pins: dict[str, Pin], pythons: set[str], regenerate: str) -> str:
    lines = [f"# Generated by `{regenerate}`; do not edit.", "# Installed with --require-hashes --no-deps."]
    for name in sorted(pins):
        pin = pins[name]
        marker = "" if pin.pythons == pythons else " ; " + " or ".join(
            f'python_version == "{python}"' for python in sorted(pin.pythons))
        hashes = "".join(f" \\\n    --hash=sha256:{digest}" for digest in sorted(pin.hashes))
        lines.append(f"{name}=={pin.version}{marker}{hashes}")
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    regenerate = ".venv-test/bin/python packaging/lock.py"
    found = interpreters(argv)
    targets = [(python, found[python], glibc, arch) for _, python, glibc in RELEASES for arch in ARCHITECTURES]
    pythons = {python for _, python, _ in RELEASES}
    with_deps, alone = runtime_requirements()
    runtime = lock([(with_deps, True), (alone, False)], targets)
    (HERE / "requirements.lock").write_text(render(runtime, pythons, regenerate))
    build_system = tomllib.loads((PROJECT / "pyproject.toml").read_text())["build-system"]["requires"]
    build = lock([(build_system + ["pip"], True)], [target for target in targets if target[3] == ARCHITECTURES[0]])
    (HERE / "build-requirements.lock").write_text(render(build, pythons, regenerate))
    print(f"locked {len(runtime)} runtime and {len(build)} build requirements for "
          + ", ".join(f"{release} (Python {python})" for release, python, _ in RELEASES))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
