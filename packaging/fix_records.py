"""Make every installed distribution's RECORD match the files as packaged.

    python3 packaging/fix_records.py VENV        (debian/rules runs it last)

debian/rules removes files pip installed (tests, bytecode, stubs for other Pythons) and rewrites
others (the build tree's path in bin/ scripts), so RECORD would list files that are gone and hashes
of the build tree's path, which differs between builds. Entries of files that are gone are
dropped; the others get the hash and size of the file as it is now (RECORD's own line stays
without either, as the wheel spec says).
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import sys
from pathlib import Path


def entry(site: Path, row: list[str]) -> list[str] | None:
    path = (site / row[0]).resolve()
    if not path.is_file():
        return None
    if not row[1]:  # RECORD itself
        return row
    digest = base64.urlsafe_b64encode(hashlib.sha256(path.read_bytes()).digest()).rstrip(b"=").decode()
    return [row[0], f"sha256={digest}", str(path.stat().st_size)]


def main(venv: Path) -> int:
    for record in venv.glob("lib/python3*/site-packages/*.dist-info/RECORD"):
        site = record.parent.parent
        rows = [fixed for row in csv.reader(io.StringIO(record.read_text())) if (fixed := entry(site, row))]
        out = io.StringIO()
        csv.writer(out, lineterminator="\n").writerows(rows)
        record.write_text(out.getvalue())
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
