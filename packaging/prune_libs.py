"""Remove the libraries wheels bundle (auditwheel's <name>.libs/ folders) that nothing left needs.

    python3 packaging/prune_libs.py SITE_PACKAGES        (debian/rules runs it)

After debian/rules drops the Python-backend stubs for other Pythons, the copies of libpython3.X
that auditwheel bundled for them are needed by nothing: a library in a .libs folder stays only if
an ELF file outside those folders needs it, directly or through other bundled libraries
(DT_NEEDED, as `readelf -d` shows it).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path


def needed(path: Path) -> set[str]:
    dynamic = subprocess.run(["readelf", "-d", str(path)], capture_output=True, text=True).stdout
    return set(re.findall(r"\(NEEDED\)\s+Shared library: \[(.+)\]", dynamic))


def is_elf(path: Path) -> bool:
    with open(path, "rb") as stream:
        return stream.read(4) == b"\x7fELF"


def kept(bundled: dict[str, set[str]], roots: set[str]) -> set[str]:
    """Names of the bundled libraries reachable from ``roots`` (what the other files need)."""
    keep: set[str] = set()
    todo = [name for name in roots if name in bundled]
    while todo:
        name = todo.pop()
        if name not in keep:
            keep.add(name)
            todo += [other for other in bundled[name] if other in bundled]
    return keep


def main(site: Path) -> int:
    files = [path for path in site.rglob("*") if path.is_file() and not path.is_symlink() and is_elf(path)]
    bundled = {path.name: path for path in files if path.parent.name.endswith(".libs")}
    roots = set().union(*(needed(path) for path in files if path.name not in bundled))
    keep = kept({name: needed(path) for name, path in bundled.items()}, roots)
    for name in sorted(set(bundled) - keep):
        print(f"removing {bundled[name].relative_to(site)}: nothing needs it")
        bundled[name].unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
