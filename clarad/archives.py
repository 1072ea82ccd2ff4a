"""Safe extraction of model archives (.zip, .tar.gz, .tgz) into a private staging directory.

Nothing in an archive is trusted. Before a byte is written, every entry is checked (``check_entries``,
pure): a relative name without ``..``, control characters or duplicates; only files, directories and
links whose targets stay inside the model; no devices, FIFOs or setuid/setgid/sticky bits; at most
``max_entries`` entries and ``max_bytes`` bytes, and no more than ``max_ratio`` times the archive's
own size (bombs). Extraction then streams each file itself (no ``extractall``), counting the bytes it
really writes against the same limits. Every refusal names the offending entry.

Layouts: the model's directory at the archive root (``affine/config.pbtxt``), or the model's files at
the root (``config.pbtxt``), the name then taken from the archive's file name.
"""

from __future__ import annotations

import errno
import gzip
import lzma
import os
import posixpath
import stat
import struct
import tarfile
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Optional

from clarad.errors import ModelRejected
from clarad.pipelines import NAME_RE

SUFFIXES = {".zip": "zip", ".tar.gz": "tar", ".tgz": "tar"}
ZIP_METHODS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA)
MAX_LINK_TARGET = 1024
RATIO_FLOOR = 1 << 20  # below 1 MiB unpacked, any compression ratio is harmless
CHUNK = 1 << 20
MAX_TAR_HEADER = 64 * 1024  # bytes of one pax or GNU long-name header (a path is at most 4096)
MAX_TAR_HEADER_CHAIN = 8  # extension headers in a row before one entry


@dataclass(frozen=True)
class Limits:
    max_entries: int = 10_000
    max_bytes: int = 64 << 30
    max_ratio: float = 200.0


@dataclass(frozen=True)
class Entry:
    name: str
    kind: str  # "file", "dir", "symlink", "hardlink", or what it really is (e.g. "device", "fifo")
    size: int = 0
    mode: int = 0o644
    target: str = ""  # symlink or hardlink target


def archive_kind(name: str) -> Optional[str]:
    lower = name.lower()
    return next((kind for suffix, kind in SUFFIXES.items() if lower.endswith(suffix)), None)


def stem(name: str) -> str:
    lower = name.lower()
    suffix = next(s for s in SUFFIXES if lower.endswith(s))
    return name[: -len(suffix)]


def _clean_name(entry: Entry) -> str:
    name = entry.name
    if not name or name in (".", "./"):
        raise ModelRejected(f"entry {name!r}: empty name", "unsafe")
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise ModelRejected(f"entry {name!r}: control character in the name", "unsafe")
    if "\\" in name:
        raise ModelRejected(f"entry {name!r}: backslash in the name", "unsafe")
    if name.startswith("/"):
        raise ModelRejected(f"entry {name!r}: absolute path", "unsafe")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ModelRejected(f"entry {name!r}: '..' in the path", "unsafe")
    return "/".join(parts)


def check_entries(entries: list[Entry], limits: Limits, archive_size: int) -> list[Entry]:
    """Refuse unsafe names, kinds, modes, duplicates and sizes; return the entries with clean
    names. Pure. Links are checked by ``check_links`` once the model's root is known."""
    if len(entries) > limits.max_entries:
        raise ModelRejected(f"more than {limits.max_entries} entries: over the limit", "too_large")
    clean: list[Entry] = []
    sizes: dict[str, int] = {}  # earlier regular files (what a hard link may copy)
    total = 0
    for entry in entries:
        name = _clean_name(entry)
        if entry.kind not in ("file", "dir", "symlink", "hardlink"):
            raise ModelRejected(f"entry {entry.name!r}: {entry.kind} entries are not allowed", "unsafe")
        if entry.mode & (stat.S_ISUID | stat.S_ISGID | stat.S_ISVTX):
            raise ModelRejected(f"entry {entry.name!r}: setuid, setgid or sticky bit", "unsafe")
        if name in {e.name for e in clean}:
            raise ModelRejected(f"entry {entry.name!r}: appears twice", "unsafe")
        size = entry.size
        if entry.kind == "hardlink":
            target = posixpath.normpath(entry.target)
            if target not in sizes:
                raise ModelRejected(f"entry {entry.name!r}: hard link to {entry.target!r} is not an earlier file of the model", "unsafe")
            size = sizes[target]  # extracted as a copy: it costs the target's bytes again
        if entry.kind in ("file", "hardlink"):
            sizes[name] = size
        total += size
        if total > limits.max_bytes:
            raise ModelRejected(f"entry {entry.name!r}: unpacked size exceeds the limit of {limits.max_bytes} bytes", "too_large")
        clean.append(Entry(name, entry.kind, size, entry.mode, entry.target))
    if total > RATIO_FLOOR and total > limits.max_ratio * max(archive_size, 1):
        raise ModelRejected(
            f"unpacks to {total} bytes from {archive_size}: compression ratio above {limits.max_ratio:g}:1", "too_large"
        )
    return clean


def check_links(entries: list[Entry], prefix: str) -> None:
    """Refuse any path that leads through a symlink, and symlinks that lead outside the model
    (the directory ``prefix`` names inside the archive, or its root). Pure.

    Resolution is lexical and a link may not pass through another link, so no chain of links can
    leave the model, whatever order the entries come in.
    """
    links = {e.name for e in entries if e.kind == "symlink"}
    for entry in entries:
        parts = entry.name.split("/")
        for depth in range(1, len(parts)):
            above = "/".join(parts[:depth])
            if above in links:
                raise ModelRejected(f"entry {entry.name!r}: its path goes through the symlink {above!r}", "unsafe")
        if entry.kind == "symlink":
            _check_link_target(entry, links, prefix)


def _check_link_target(entry: Entry, links: set[str], prefix: str) -> None:
    outside = ModelRejected(f"entry {entry.name!r}: symlink to {entry.target!r} points outside the model", "unsafe")
    if not entry.target or entry.target.startswith("/"):
        raise outside
    floor = len([p for p in prefix.split("/") if p])  # the model's own directory inside the archive
    path = entry.name.split("/")[:-1]
    for part in entry.target.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if len(path) <= floor:
                raise outside
            path.pop()
            continue
        path.append(part)
        if "/".join(path) in links:
            raise ModelRejected(f"entry {entry.name!r}: symlink to {entry.target!r} goes through another symlink", "unsafe")


# -- reading the two formats -------------------------------------------------------------------


def _tar_entries(tar: tarfile.TarFile, members: list[tarfile.TarInfo], limits: Limits) -> list[Entry]:
    """Read the members one by one (into ``members``), stopping as soon as there are too many."""
    entries = []
    for member in tar:
        members.append(member)
        if len(members) > limits.max_entries:
            raise ModelRejected(f"more than {limits.max_entries} entries: over the limit", "too_large")
        if member.isreg():
            kind = "file"
        elif member.isdir():
            kind = "dir"
        elif member.issym():
            kind = "symlink"
        elif member.islnk():
            kind = "hardlink"
        elif member.ischr() or member.isblk():
            kind = "device"
        elif member.isfifo():
            kind = "fifo"
        else:
            kind = "special"
        entries.append(Entry(member.name, kind, member.size if kind == "file" else 0, member.mode, member.linkname))
    return entries


_EXTENSION_HEADERS = (tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK, tarfile.XHDTYPE, tarfile.XGLTYPE,
                      tarfile.SOLARIS_XHDTYPE)


class _BoundedTarInfo(tarfile.TarInfo):
    """A tar header reader that refuses, before reading them, the headers ``tarfile`` would read
    into memory whole: a pax or GNU long-name header of more than MAX_TAR_HEADER bytes (a 611 KB
    archive can declare one of 600 MiB), more than MAX_TAR_HEADER_CHAIN of them in a row, and
    sparse-file maps (a chain of those has no bound either)."""

    def _proc_member(self, archive: tarfile.TarFile) -> tarfile.TarInfo:
        if self.type == tarfile.GNUTYPE_SPARSE:
            self._sparse(archive)
        if self.type not in _EXTENSION_HEADERS:
            return super()._proc_member(archive)  # type: ignore[misc,no-any-return]
        if self.size > MAX_TAR_HEADER:
            raise ModelRejected(f"a tar extension header of {self.size} bytes (at offset {self.offset}): more than "
                                f"{MAX_TAR_HEADER}", "unsafe")
        depth = getattr(archive, "_extension_depth", 0)
        if depth >= MAX_TAR_HEADER_CHAIN:
            raise ModelRejected(f"more than {MAX_TAR_HEADER_CHAIN} tar extension headers in a row (at offset "
                                f"{self.offset})", "unsafe")
        setattr(archive, "_extension_depth", depth + 1)
        try:
            return super()._proc_member(archive)  # type: ignore[misc,no-any-return]
        finally:
            setattr(archive, "_extension_depth", depth)

    def _sparse(self, archive: tarfile.TarFile, *rest: object) -> None:
        raise ModelRejected(f"entry {self.name!r}: sparse files are not allowed", "unsafe")

    _proc_gnusparse_00 = _proc_gnusparse_01 = _proc_gnusparse_10 = _sparse


def _zip_entries(archive: zipfile.ZipFile) -> list[Entry]:
    entries = []
    for info in archive.infolist():
        mode = info.external_attr >> 16
        if info.flag_bits & 0x1:
            raise ModelRejected(f"entry {info.filename!r}: encrypted entries are not allowed", "unsafe")
        if info.compress_type not in ZIP_METHODS:
            raise ModelRejected(f"entry {info.filename!r}: unsupported compression method {info.compress_type}", "archive")
        if stat.S_ISLNK(mode):
            if info.file_size > MAX_LINK_TARGET:
                raise ModelRejected(f"entry {info.filename!r}: symlink target longer than {MAX_LINK_TARGET} bytes", "unsafe")
            target = archive.read(info).decode("utf-8", "replace")
            entries.append(Entry(info.filename, "symlink", 0, mode, target))
        elif info.is_dir():
            entries.append(Entry(info.filename, "dir", 0, mode))
        elif stat.S_IFMT(mode) and not stat.S_ISREG(mode):  # no type bits (e.g. writestr's 0o600): a file
            entries.append(Entry(info.filename, "device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "special", 0, mode))
        else:
            entries.append(Entry(info.filename, "file", info.file_size, mode))
    return entries


def _model_root(entries: list[Entry], archive_name: str) -> tuple[str, str]:
    """(model name, prefix inside the archive) for the two supported layouts."""
    names = {e.name for e in entries}
    if "config.pbtxt" in names:
        name = stem(archive_name)
        if not NAME_RE.match(name):
            raise ModelRejected(f"model name {name!r} (from the archive's file name) must be 1-255 characters of A-Z a-z 0-9 - _", "name")
        return name, ""
    tops = {e.name.split("/", 1)[0] for e in entries}
    if len(tops) == 1:
        top = tops.pop()
        if f"{top}/config.pbtxt" in names and NAME_RE.match(top):
            return top, top + "/"
    raise ModelRejected(
        "no config.pbtxt at the archive's root or in a single top-level model directory", "layout"
    )


def extract(archive: Path, staging: Path, limits: Limits) -> Path:
    """Extract a model archive under ``staging`` (which must be empty); return the model directory."""
    kind = archive_kind(archive.name)
    if kind is None:
        raise ModelRejected(f"{archive.name}: not a .zip, .tar.gz or .tgz archive", "archive")
    size = archive.stat().st_size
    try:
        if kind == "zip":
            with zipfile.ZipFile(archive) as zf:
                infos = zf.infolist()
                entries = check_entries(_zip_entries(zf), limits, size)
                return _extract(entries, archive.name, staging, limits, lambda n: zf.open(infos[n]))
        with tarfile.open(archive, "r:gz", tarinfo=_BoundedTarInfo) as tar:
            members: list[tarfile.TarInfo] = []
            entries = check_entries(_tar_entries(tar, members, limits), limits, size)
            return _extract(entries, archive.name, staging, limits, lambda n: tar.extractfile(members[n]))
    except (zipfile.BadZipFile, tarfile.TarError, gzip.BadGzipFile, zlib.error, lzma.LZMAError, EOFError, struct.error,
            ValueError, LookupError, NotImplementedError, RuntimeError) as exc:  # what damaged archives make readers raise
        raise ModelRejected(f"{archive.name}: unreadable archive ({' '.join(str(exc).split())})", "archive") from None
    except OSError as exc:
        if exc.errno not in (None, errno.EINVAL):  # a seek to a damaged offset, a bad bz2 stream: not the disk
            raise
        raise ModelRejected(f"{archive.name}: unreadable archive ({' '.join(str(exc).split())})", "archive") from None


def _extract(entries: list[Entry], archive_name: str, staging: Path, limits: Limits,
             open_nth: Callable[[int], Optional[IO[bytes]]]) -> Path:
    name, prefix = _model_root(entries, archive_name)
    check_links(entries, prefix)
    root = staging / name
    root.mkdir(parents=True)
    real_root = os.path.realpath(root)
    written = 0
    for index, entry in enumerate(entries):
        relative = entry.name[len(prefix):] if entry.name.startswith(prefix) else ""
        if not relative:
            continue
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if os.path.commonpath([real_root, os.path.realpath(path.parent)]) != real_root:  # second guard
            raise ModelRejected(f"entry {entry.name!r}: would be written outside the model", "unsafe")
        if entry.kind == "dir":
            path.mkdir(exist_ok=True)
        elif entry.kind == "symlink":
            path.symlink_to(entry.target)
        else:
            if entry.kind == "hardlink":  # a copy of an earlier file of the model
                stream: Optional[IO[bytes]] = open(root / posixpath.normpath(entry.target)[len(prefix):], "rb")
            else:
                stream = open_nth(index)
            assert stream is not None
            with stream:
                written = _copy(stream, path, entry, written, limits)
            path.chmod(0o755 if entry.mode & 0o111 else 0o644)
    return root


def _copy(stream: IO[bytes], path: Path, entry: Entry, written: int, limits: Limits) -> int:
    with open(path, "xb") as out:
        for chunk in iter(lambda: stream.read(CHUNK), b""):
            written += len(chunk)
            if written > limits.max_bytes:
                raise ModelRejected(f"entry {entry.name!r}: unpacked size exceeds the limit of {limits.max_bytes} bytes", "too_large")
            out.write(chunk)
    return written


def write_zip(model_dir: Path, out: Path) -> int:
    """Write the model as a zip with its directory at the root (as Clara's download did); return
    the number of files. Written to a temporary name first, so ``out`` is whole or absent."""
    partial = out.with_name(out.name + ".partial")
    count = 0
    with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for dirpath, dirnames, filenames in os.walk(model_dir):
            dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
            for entry in sorted(filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]):
                path = Path(dirpath, entry)
                arcname = f"{model_dir.name}/{path.relative_to(model_dir).as_posix()}"
                if path.is_symlink():  # kept as a link, as the model has it
                    link = zipfile.ZipInfo(arcname)
                    link.external_attr = (stat.S_IFLNK | 0o777) << 16
                    zf.writestr(link, os.readlink(path))
                else:
                    zf.write(path, arcname)
                count += 1
    partial.replace(out)
    return count
