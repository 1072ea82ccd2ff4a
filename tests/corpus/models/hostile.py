"""Hostile and broken model drops, generated: ``build(where)`` creates every case under ``where``.

Each case is one drop as the inbox would see it (an archive file or a model directory), made at the
byte level where a well-behaved tool would refuse to make it (``tarfile.TarInfo`` of any type, names
with ``..``, absolute names, setuid modes; ``zipfile.ZipInfo`` with a raw ``external_attr``; patched
zip headers). ``Case.expect`` is a substring the ``ModelRejected`` message must contain; ``entry``,
where the case is about one entry, is the name the message must quote.

Layout under ``where``:

    where/_outside/secret    a file outside every model (target of links that must not be followed)
    where/<case>/<drop>      the drop itself: an archive (``affine.tgz``) or a model directory

Traversal entries aim at ``../outside/evil`` and the like *relative to the extraction root*: the
tests stage into ``<tmp>/staging/<model>`` beside an empty ``<tmp>/outside``, so anything that gets
through lands in ``<tmp>/outside`` or ``<tmp>/staging`` as a file named ``evil``. Absolute entries
aim at ``where/_outside/evil``. Nothing here writes outside ``where``.

Every archive is small: the bombs are 50 MB of zeros that compress to about 50 kB.
"""

from __future__ import annotations

import gzip
import io
import os
import shutil
import stat
import struct
import tarfile
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from clarad.archives import Limits

DEMO = Path(__file__).resolve().parents[3] / "docs" / "demo" / "models" / "affine"
OUTSIDE = "_outside"

FILE = stat.S_IFREG | 0o644
EXEC = stat.S_IFREG | 0o755
DIR = stat.S_IFDIR | 0o755
LINK = stat.S_IFLNK | 0o777
BOMB_BYTES = 50 << 20


@dataclass(frozen=True)
class Case:
    name: str
    path: Path
    expect: str
    entry: str | None = None  # the offending entry, which the refusal must name
    limits: Limits = field(default_factory=Limits)


Builder = Callable[[Path, Path], Case]  # (the case's own folder, where) -> Case
_BUILDERS: dict[str, Builder] = {}


_ONE_ENTRY: set[str] = set()


def case(name: str, one_entry: bool = False) -> Callable[[Builder], Builder]:
    """Register a builder; ``one_entry``: the case is about one entry, which the refusal must name."""
    def register(builder: Builder) -> Builder:
        assert name not in _BUILDERS, name
        _BUILDERS[name] = builder
        if one_entry:
            _ONE_ENTRY.add(name)
        return builder

    return register


def names(one_entry: bool | None = None) -> list[str]:
    """The cases' names, without building anything (for parametrizing tests); ``one_entry``: only
    those about one entry (True) or not (False)."""
    return [n for n in _BUILDERS if one_entry is None or (n in _ONE_ENTRY) == one_entry]


def build_one(name: str, where: Path) -> Case:
    where.mkdir(parents=True, exist_ok=True)
    outside = where / OUTSIDE
    outside.mkdir(exist_ok=True)
    if not (outside / "secret").exists():
        (outside / "secret").write_bytes(b"not part of any model\n")
    folder = where / name
    folder.mkdir()
    built = _BUILDERS[name](folder, where)
    assert built.name == name and os.path.lexists(built.path), built
    assert (built.entry is not None) == (name in _ONE_ENTRY), built
    return built


def build(where: Path) -> list[Case]:
    """Create every case under ``where`` (which may exist; the case folders must not)."""
    return [build_one(name, where) for name in _BUILDERS]


# -- the valid model everything derives from ------------------------------------------------------


def affine_files(name: str = "affine") -> dict[str, bytes]:
    """The demo model's files (relative path -> content), its config naming the model ``name``."""
    files = {p.relative_to(DEMO).as_posix(): p.read_bytes() for p in sorted(DEMO.rglob("*")) if p.is_file()}
    config = files["config.pbtxt"].decode()
    assert 'name: "affine"' in config
    files["config.pbtxt"] = config.replace('name: "affine"', f'name: "{name}"').encode()
    return files


def affine_dir(parent: Path, name: str = "affine") -> Path:
    """A copy of the demo model at ``parent/name`` (config renamed to match)."""
    target = parent / name
    shutil.copytree(DEMO, target)
    (target / "config.pbtxt").write_bytes(affine_files(name)["config.pbtxt"])
    return target


# -- archive writers ------------------------------------------------------------------------------

# A member: (kind, name, data or link target, mode). Kinds: file, dir, symlink, hardlink, chr, fifo.
Member = tuple[str, str, bytes | str, int]


def file(name: str, data: bytes = b"", mode: int = 0o644) -> Member:
    return ("file", name, data, mode)


def directory(name: str, mode: int = 0o755) -> Member:
    return ("dir", name, b"", mode)


def symlink(name: str, target: str) -> Member:
    return ("symlink", name, target, 0o777)


def hardlink(name: str, target: str) -> Member:
    return ("hardlink", name, target, 0o644)


def affine_members(prefix: str = "", name: str = "affine") -> list[Member]:
    return [file(prefix + rel, data) for rel, data in affine_files(name).items()]


_TAR_TYPES = {"file": tarfile.REGTYPE, "dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE,
              "hardlink": tarfile.LNKTYPE, "chr": tarfile.CHRTYPE, "fifo": tarfile.FIFOTYPE}


def write_tar(path: Path, members: list[Member]) -> Path:
    """A gzipped tar with exactly these members (no name cleaning, no checks)."""
    with tarfile.open(path, "w:gz", format=tarfile.PAX_FORMAT) as tar:
        for kind, name, payload, mode in members:
            info = tarfile.TarInfo(name)
            info.type = _TAR_TYPES[kind]
            info.mode = mode
            info.mtime = 1_700_000_000
            data = None
            if kind == "file":
                assert isinstance(payload, bytes)
                info.size = len(payload)
                data = io.BytesIO(payload)
            elif kind in ("symlink", "hardlink"):
                assert isinstance(payload, str)
                info.linkname = payload
            elif kind == "chr":
                info.devmajor, info.devminor = 1, 3  # /dev/null
            tar.addfile(info, data)
    return path


def zip_member(zf: zipfile.ZipFile, name: str, data: bytes, mode: int) -> None:
    """One raw zip entry: ``mode`` is the whole st_mode stored in external_attr's high 16 bits."""
    info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_DEFLATED
    info.create_system = 3  # Unix, so the mode is meaningful
    info.external_attr = (mode & 0xFFFF) << 16
    if stat.S_ISDIR(mode):
        info.external_attr |= 0x10
    zf.writestr(info, data)


def write_zip(path: Path, members: list[tuple[str, bytes, int]]) -> Path:
    """A zip with exactly these (name, data, st_mode) entries, duplicates included."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Duplicate name": wanted here
        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for name, data, mode in members:
                zip_member(zf, name, data, mode)
    return path


def zip_files(prefix: str = "", name: str = "affine") -> list[tuple[str, bytes, int]]:
    return [(prefix + rel, data, FILE) for rel, data in affine_files(name).items()]


def patch_zip_central(path: Path, entry: str, *, or_flags: int = 0, method: int | None = None) -> None:
    """Set flag bits or the compression method of ``entry`` in the zip's central directory."""
    raw = bytearray(path.read_bytes())
    offset = raw.find(b"PK\x01\x02")
    found = False
    while offset >= 0:
        name_len = struct.unpack_from("<H", raw, offset + 28)[0]
        extra_len, comment_len = struct.unpack_from("<HH", raw, offset + 30)
        if raw[offset + 46: offset + 46 + name_len].decode() == entry:
            flags = struct.unpack_from("<H", raw, offset + 8)[0]
            struct.pack_into("<H", raw, offset + 8, flags | or_flags)
            if method is not None:
                struct.pack_into("<H", raw, offset + 10, method)
            found = True
        offset = raw.find(b"PK\x01\x02", offset + 46 + name_len + extra_len + comment_len)
    assert found, entry
    path.write_bytes(bytes(raw))


# -- path traversal -------------------------------------------------------------------------------


@case("tar-dotdot", one_entry=True)
def _(folder: Path, where: Path) -> Case:
    path = write_tar(folder / "affine.tgz", affine_members() + [file("../outside/evil", b"x")])
    return Case("tar-dotdot", path, "'..' in the path", entry="../outside/evil")


@case("tar-nested-dotdot", one_entry=True)
def _(folder: Path, where: Path) -> Case:
    members = affine_members("affine/") + [file("affine/a/../../../outside/evil", b"x")]
    path = write_tar(folder / "affine.tar.gz", members)
    return Case("tar-nested-dotdot", path, "'..' in the path", entry="affine/a/../../../outside/evil")


@case("tar-dotdot-in-short-name", one_entry=True)
def _(folder: Path, where: Path) -> Case:
    path = write_tar(folder / "affine.tgz", affine_members() + [file("a/../../evil", b"x")])
    return Case("tar-dotdot-in-short-name", path, "'..' in the path", entry="a/../../evil")


@case("zip-dotdot", one_entry=True)
def _(folder: Path, where: Path) -> Case:
    path = write_zip(folder / "affine.zip", zip_files() + [("../outside/evil", b"x", FILE)])
    return Case("zip-dotdot", path, "'..' in the path", entry="../outside/evil")


@case("zip-nested-dotdot", one_entry=True)
def _(folder: Path, where: Path) -> Case:
    path = write_zip(folder / "affine.zip", zip_files("affine/") + [("affine/1/../../../outside/evil", b"x", FILE)])
    return Case("zip-nested-dotdot", path, "'..' in the path", entry="affine/1/../../../outside/evil")


@case("tar-absolute", one_entry=True)
def _(folder: Path, where: Path) -> Case:
    evil = str(where / OUTSIDE / "evil")
    path = write_tar(folder / "affine.tgz", affine_members() + [file(evil, b"x")])
    return Case("tar-absolute", path, "absolute path", entry=evil)


@case("zip-absolute", one_entry=True)
def _(folder: Path, where: Path) -> Case:
    evil = str(where / OUTSIDE / "evil")
    path = write_zip(folder / "affine.zip", zip_files() + [(evil, b"x", FILE)])
    return Case("zip-absolute", path, "absolute path", entry=evil)


@case("zip-backslash", one_entry=True)
def _(folder: Path, where: Path) -> Case:
    name = "..\\outside\\evil"
    path = write_zip(folder / "affine.zip", zip_files() + [(name, b"x", FILE)])
    return Case("zip-backslash", path, "backslash in the name", entry=name)


# -- links ----------------------------------------------------------------------------------------


@case("tar-symlink-absolute", one_entry=True)
def _(folder: Path, where: Path) -> Case:
    target = str(where / OUTSIDE / "secret")
    path = write_tar(folder / "affine.tgz", affine_members() + [symlink("1/evil", target)])
    return Case("tar-symlink-absolute", path, "points outside the model", entry="1/evil")


@case("tar-symlink-dotdot", one_entry=True)
def _(folder: Path, where: Path) -> Case:
    path = write_tar(folder / "affine.tgz", affine_members() + [symlink("1/evil", "../../outside")])
    return Case("tar-symlink-dotdot", path, "points outside the model", entry="1/evil")


@case("tar-symlink-then-write-through-it", one_entry=True)
def _(folder: Path, where: Path) -> Case:
    # the classic: a link out, then a file "inside" the link
    members = affine_members() + [symlink("evil", "../../outside"), file("evil/evil", b"x")]
    path = write_tar(folder / "affine.tgz", members)
    return Case("tar-symlink-then-write-through-it", path, "points outside the model", entry="evil")


@case("tar-symlink-chain-escape")
def _(folder: Path, where: Path) -> Case:
    # Each link is "inside" when read on its own, but "d" makes the name deeper than the path on
    # disk: d/d/up is really <root>/up, and ../.. from there is the staging area's parent.
    members = affine_members("", "m") + [
        symlink("d", "."),
        symlink("d/d/up", "../.."),
        file("d/d/up/outside/evil", b"written outside the staging area\n"),
    ]
    path = write_tar(folder / "m.tgz", members)
    return Case("tar-symlink-chain-escape", path, "symlink")


@case("tar-prefix-symlink-to-staging", one_entry=True)
def _(folder: Path, where: Path) -> Case:
    # With the model in a top-level directory, a link is checked against the archive's root, not
    # the model's: affine/up -> .. is the staging directory.
    members = affine_members("affine/") + [symlink("affine/up", ".."), file("affine/up/evil", b"x")]
    path = write_tar(folder / "affine.tgz", members)
    return Case("tar-prefix-symlink-to-staging", path, "points outside the model", entry="affine/up")


@case("zip-symlink-absolute", one_entry=True)
def _(folder: Path, where: Path) -> Case:
    target = str(where / OUTSIDE / "secret")
    path = write_zip(folder / "affine.zip", zip_files() + [("1/evil", target.encode(), LINK)])
    return Case("zip-symlink-absolute", path, "points outside the model", entry="1/evil")


@case("zip-symlink-dotdot", one_entry=True)
def _(folder: Path, where: Path) -> Case:
    path = write_zip(folder / "affine.zip", zip_files("affine/") + [("affine/1/evil", b"../../../outside", LINK)])
    return Case("zip-symlink-dotdot", path, "points outside the model", entry="affine/1/evil")


@case("zip-symlink-long-target", one_entry=True)
def _(folder: Path, where: Path) -> Case:
    # a link whose target is too long to be read is taken to point at "" and passes the check
    path = write_zip(folder / "affine.zip", zip_files() + [("1/evil", b"../" * 2000, LINK)])
    return Case("zip-symlink-long-target", path, "symlink", entry="1/evil")


@case("dir-symlink-absolute", one_entry=True)
def _(folder: Path, where: Path) -> Case:
    model = affine_dir(folder, "dir-symlink-absolute")
    os.symlink(where / OUTSIDE / "secret", model / "1" / "evil")
    return Case("dir-symlink-absolute", model, "points outside the model", entry="1/evil")


@case("dir-symlink-dotdot", one_entry=True)
def _(folder: Path, where: Path) -> Case:
    model = affine_dir(folder, "dir-symlink-dotdot")
    os.symlink("../../..", model / "1" / "evil")  # a directory link, out of the model
    return Case("dir-symlink-dotdot", model, "points outside the model", entry="1/evil")


@case("tar-hardlink-dotdot", one_entry=True)
def _(folder: Path, where: Path) -> Case:
    path = write_tar(folder / "affine.tgz", affine_members() + [hardlink("1/evil", "../outside/secret")])
    return Case("tar-hardlink-dotdot", path, "hard link to", entry="1/evil")


@case("tar-hardlink-absolute", one_entry=True)
def _(folder: Path, where: Path) -> Case:
    target = str(where / OUTSIDE / "secret")
    path = write_tar(folder / "affine.tgz", affine_members() + [hardlink("1/evil", target)])
    return Case("tar-hardlink-absolute", path, "hard link to", entry="1/evil")


@case("tar-hardlink-to-later-entry", one_entry=True)
def _(folder: Path, where: Path) -> Case:
    members = affine_members() + [hardlink("1/evil", "1/later.py"), file("1/later.py", b"pass\n")]
    path = write_tar(folder / "affine.tgz", members)
    return Case("tar-hardlink-to-later-entry", path, "is not an earlier file", entry="1/evil")


@case("tar-hardlink-to-unknown-entry", one_entry=True)
def _(folder: Path, where: Path) -> Case:
    path = write_tar(folder / "affine.tgz", affine_members() + [hardlink("1/evil", "nowhere.py")])
    return Case("tar-hardlink-to-unknown-entry", path, "is not an earlier file", entry="1/evil")


@case("tar-hardlink-to-directory", one_entry=True)
def _(folder: Path, where: Path) -> Case:
    members = affine_members() + [directory("1"), hardlink("evil", "1")]
    path = write_tar(folder / "affine.tgz", members)
    return Case("tar-hardlink-to-directory", path, "hard link", entry="evil")


@case("tar-hardlink-bomb")
def _(folder: Path, where: Path) -> Case:
    # One incompressible file and hundreds of hard links to it: each link is a copy when extracted,
    # but costs only its header in the archive, so the bytes written dwarf the archive.
    blob = os.urandom(16 << 10)
    count = 400
    links = [hardlink(f"1/c{i:04d}", "1/blob.bin") for i in range(count)]
    members = affine_members() + [file("1/blob.bin", blob)] + links
    path = write_tar(folder / "affine.tgz", members)
    unpacked = len(blob) * (count + 1)
    assert unpacked > 1 << 20 and unpacked > 200 * path.stat().st_size, (unpacked, path.stat().st_size)
    return Case("tar-hardlink-bomb", path, "compression ratio")


@case("dir-hardlink-outside", one_entry=True)
def _(folder: Path, where: Path) -> Case:
    model = affine_dir(folder, "dir-hardlink-outside")
    os.link(where / OUTSIDE / "secret", model / "1" / "evil")
    return Case("dir-hardlink-outside", model, "hard-linked", entry="1/evil")


# -- what is not a file ---------------------------------------------------------------------------


@case("tar-char-device", one_entry=True)
def _(folder: Path, where: Path) -> Case:
    path = write_tar(folder / "affine.tgz", affine_members() + [("chr", "1/evil", b"", 0o666)])
    return Case("tar-char-device", path, "device entries are not allowed", entry="1/evil")


@case("tar-fifo", one_entry=True)
def _(folder: Path, where: Path) -> Case:
    path = write_tar(folder / "affine.tgz", affine_members() + [("fifo", "1/evil", b"", 0o644)])
    return Case("tar-fifo", path, "fifo entries are not allowed", entry="1/evil")


@case("zip-char-device", one_entry=True)
def _(folder: Path, where: Path) -> Case:
    path = write_zip(folder / "affine.zip", zip_files() + [("1/evil", b"", stat.S_IFCHR | 0o666)])
    return Case("zip-char-device", path, "device entries are not allowed", entry="1/evil")


@case("zip-fifo", one_entry=True)
def _(folder: Path, where: Path) -> Case:
    path = write_zip(folder / "affine.zip", zip_files() + [("1/evil", b"", stat.S_IFIFO | 0o644)])
    return Case("zip-fifo", path, "entries are not allowed", entry="1/evil")


@case("dir-fifo", one_entry=True)
def _(folder: Path, where: Path) -> Case:
    model = affine_dir(folder, "dir-fifo")
    os.mkfifo(model / "1" / "evil")
    return Case("dir-fifo", model, "is not a regular file", entry="1/evil")


# -- modes ----------------------------------------------------------------------------------------


@case("tar-setuid", one_entry=True)
def _(folder: Path, where: Path) -> Case:
    members = [file("1/model.py", affine_files()["1/model.py"], 0o4755) if m[1] == "1/model.py" else m
               for m in affine_members()]
    path = write_tar(folder / "affine.tgz", members)
    return Case("tar-setuid", path, "setuid, setgid or sticky bit", entry="1/model.py")


@case("tar-setgid-directory", one_entry=True)
def _(folder: Path, where: Path) -> Case:
    path = write_tar(folder / "affine.tgz", [directory("1", 0o2775)] + affine_members())
    return Case("tar-setgid-directory", path, "setuid, setgid or sticky bit", entry="1")


@case("zip-setuid", one_entry=True)
def _(folder: Path, where: Path) -> Case:
    members = [(n, d, stat.S_IFREG | 0o4755 if n == "1/model.py" else m) for n, d, m in zip_files()]
    path = write_zip(folder / "affine.zip", members)
    return Case("zip-setuid", path, "setuid, setgid or sticky bit", entry="1/model.py")


@case("dir-setuid", one_entry=True)
def _(folder: Path, where: Path) -> Case:
    model = affine_dir(folder, "dir-setuid")
    os.chmod(model / "1" / "model.py", 0o4755)
    assert os.stat(model / "1" / "model.py").st_mode & stat.S_ISUID, "cannot set the setuid bit here"
    return Case("dir-setuid", model, "setuid, setgid or sticky bit", entry="1/model.py")


@case("dir-setgid-directory", one_entry=True)
def _(folder: Path, where: Path) -> Case:
    model = affine_dir(folder, "dir-setgid-directory")
    os.chmod(model / "1", 0o2755)
    assert os.stat(model / "1").st_mode & stat.S_ISGID, "cannot set the setgid bit here"
    return Case("dir-setgid-directory", model, "setuid, setgid or sticky bit", entry="1")


# -- sizes ----------------------------------------------------------------------------------------


@case("zip-bomb")
def _(folder: Path, where: Path) -> Case:
    path = write_zip(folder / "affine.zip", zip_files() + [("1/weights.bin", bytes(BOMB_BYTES), FILE)])
    assert path.stat().st_size < 1 << 20
    return Case("zip-bomb", path, "compression ratio above 200:1")


@case("tgz-bomb")
def _(folder: Path, where: Path) -> Case:
    path = write_tar(folder / "affine.tar.gz", affine_members() + [file("1/weights.bin", bytes(BOMB_BYTES))])
    assert path.stat().st_size < 1 << 20
    return Case("tgz-bomb", path, "compression ratio above 200:1")


@case("too-many-entries")
def _(folder: Path, where: Path) -> Case:
    members = affine_members() + [file(f"1/extra{i}.txt", b"x") for i in range(6)]
    path = write_tar(folder / "affine.tgz", members)
    return Case("too-many-entries", path, "more than 5 entries: over the limit", limits=Limits(max_entries=5))


@case("over-max-bytes", one_entry=True)
def _(folder: Path, where: Path) -> Case:
    path = write_zip(folder / "affine.zip", zip_files() + [("1/big.bin", os.urandom(10_000), FILE)])
    return Case("over-max-bytes", path, "unpacked size exceeds the limit of 4096 bytes", entry="1/big.bin",
                limits=Limits(max_bytes=4096))


# -- names ----------------------------------------------------------------------------------------


@case("zip-duplicate", one_entry=True)
def _(folder: Path, where: Path) -> Case:
    path = write_zip(folder / "affine.zip", zip_files() + [("1/model.py", b"import os\n", FILE)])
    return Case("zip-duplicate", path, "appears twice", entry="1/model.py")


@case("tar-duplicate", one_entry=True)
def _(folder: Path, where: Path) -> Case:
    path = write_tar(folder / "affine.tgz", affine_members() + [file("./1//model.py", b"import os\n")])
    return Case("tar-duplicate", path, "appears twice", entry="./1//model.py")


@case("tar-newline-name", one_entry=True)
def _(folder: Path, where: Path) -> Case:
    path = write_tar(folder / "affine.tgz", affine_members() + [file("1/evil\n.py", b"x")])
    return Case("tar-newline-name", path, "control character", entry="1/evil\n.py")


@case("zip-bell-name", one_entry=True)
def _(folder: Path, where: Path) -> Case:
    path = write_zip(folder / "affine.zip", zip_files() + [("1/ev\x07il", b"x", FILE)])
    return Case("zip-bell-name", path, "control character", entry="1/ev\x07il")


@case("archive-stem-dotdot")
def _(folder: Path, where: Path) -> Case:
    # files at the root: the model is named after the archive, here ".."
    path = write_zip(folder / "...zip", zip_files("", ".."))
    return Case("archive-stem-dotdot", path, "model name '..'")


@case("bad-name-space")
def _(folder: Path, where: Path) -> Case:
    path = write_zip(folder / "my model.zip", zip_files("", "my model"))
    return Case("bad-name-space", path, "model name 'my model'")


@case("bad-name-dot")
def _(folder: Path, where: Path) -> Case:
    model = affine_dir(folder, "affine.v2")
    return Case("bad-name-dot", model, "model name 'affine.v2'")


# -- unreadable archives --------------------------------------------------------------------------


@case("empty-zip")
def _(folder: Path, where: Path) -> Case:
    return Case("empty-zip", write_zip(folder / "affine.zip", []), "no config.pbtxt")


@case("empty-tgz")
def _(folder: Path, where: Path) -> Case:
    return Case("empty-tgz", write_tar(folder / "affine.tgz", []), "no config.pbtxt")


@case("corrupt-zip")
def _(folder: Path, where: Path) -> Case:
    path = folder / "affine.zip"
    path.write_bytes(b"PK\x03\x04" + bytes((i * 151 + 7) % 256 for i in range(4096)))
    return Case("corrupt-zip", path, "unreadable archive")


@case("truncated-tgz")
def _(folder: Path, where: Path) -> Case:
    whole = write_tar(folder / "whole.tgz", affine_members() + [file("1/data.bin", os.urandom(20_000))])
    path = folder / "affine.tgz"
    path.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    whole.unlink()
    return Case("truncated-tgz", path, "unreadable archive")


@case("zip-encrypted-entry", one_entry=True)
def _(folder: Path, where: Path) -> Case:
    path = write_zip(folder / "affine.zip", zip_files())
    patch_zip_central(path, "1/model.py", or_flags=0x1)
    return Case("zip-encrypted-entry", path, "encrypted", entry="1/model.py")


@case("zip-unknown-compression", one_entry=True)
def _(folder: Path, where: Path) -> Case:
    path = write_zip(folder / "affine.zip", zip_files())
    patch_zip_central(path, "1/model.py", method=99)
    return Case("zip-unknown-compression", path, "compression", entry="1/model.py")


@case("not-an-archive")
def _(folder: Path, where: Path) -> Case:
    path = folder / "model.txt"
    path.write_text("a model, honest\n")
    return Case("not-an-archive", path, ".zip, .tar.gz or .tgz archive")


# -- Triton layout and config ---------------------------------------------------------------------


@case("no-config")
def _(folder: Path, where: Path) -> Case:
    members = [m for m in affine_members("affine/") if m[1] != "affine/config.pbtxt"]
    return Case("no-config", write_tar(folder / "affine.tgz", members), "no config.pbtxt")


@case("two-top-directories")
def _(folder: Path, where: Path) -> Case:
    members = affine_members("affine/") + affine_members("other/", "other")
    return Case("two-top-directories", write_tar(folder / "models.tgz", members), "single top-level model directory")


@case("config-name-mismatch")
def _(folder: Path, where: Path) -> Case:
    path = write_tar(folder / "affine.tgz", affine_members("affine/", "other"))
    return Case("config-name-mismatch", path, "names the model 'other'")


@case("no-version-directory")
def _(folder: Path, where: Path) -> Case:
    members = [file("affine/config.pbtxt", affine_files()["config.pbtxt"]), file("affine/model.py", b"pass\n")]
    return Case("no-version-directory", write_tar(folder / "affine.tgz", members), "no numeric version directory")


@case("unparsable-config")
def _(folder: Path, where: Path) -> Case:
    config = file("affine/config.pbtxt", b'name: "affine"\nbackend: "python"\nbogus_field: 1\n')
    members = [config if m[1] == config[1] else m for m in affine_members("affine/")]
    path = write_tar(folder / "affine.tgz", members)
    return Case("unparsable-config", path, 'no field named "bogus_field"')


@case("config-syntax-error")
def _(folder: Path, where: Path) -> Case:
    members = [file("config.pbtxt", b'name: "affine"\nbackend: "python\n'), file("1/model.py", b"pass\n")]
    return Case("config-syntax-error", write_tar(folder / "affine.tgz", members), "affine/config.pbtxt: 2:")


@case("config-not-utf8")
def _(folder: Path, where: Path) -> Case:
    members = [("config.pbtxt", b'name: "affine"\nbackend: "python"\n# \xff\xfe\n', FILE),
               ("1/model.py", b"pass\n", FILE)]
    return Case("config-not-utf8", write_zip(folder / "affine.zip", members), "not UTF-8")


@case("no-backend-or-platform")
def _(folder: Path, where: Path) -> Case:
    members = [file("config.pbtxt", b'name: "affine"\nmax_batch_size: 0\n'), file("1/model.py", b"pass\n")]
    return Case("no-backend-or-platform", write_tar(folder / "affine.tgz", members), "neither backend nor platform")


@case("python-without-model-py")
def _(folder: Path, where: Path) -> Case:
    members = [file("1/other.py", affine_files()["1/model.py"]) if m[1] == "1/model.py" else m
               for m in affine_members()]
    return Case("python-without-model-py", write_tar(folder / "affine.tgz", members), "needs model.py")


@case("onnx-without-model-onnx")
def _(folder: Path, where: Path) -> Case:
    members = [(n, d, FILE) for n, d in (("config.pbtxt", b'name: "onnx"\nplatform: "onnxruntime_onnx"\n'),
                                          ("1/model.plan", b"\0"))]
    return Case("onnx-without-model-onnx", write_zip(folder / "onnx.zip", members), "needs model.onnx")


# -- tar headers tarfile would read into memory whole ----------------------------------------------

HUGE_HEADER = 64 << 20  # declared size of one extension header (its bytes are zeros: about 64 kB packed)


def raw_tar_header(name: str, kind: bytes, size: int) -> bytes:
    """One 512-byte header of any type, as a hostile tool would write it."""
    info = tarfile.TarInfo(name)
    info.type, info.size, info.mtime = kind, size, 1_700_000_000
    return info.tobuf(tarfile.USTAR_FORMAT)


def write_raw_tar(path: Path, blocks: list[bytes | int], tail: list[Member]) -> Path:
    """A gzipped tar: raw ``blocks`` (bytes, or a count of zero bytes, padded to 512), then ``tail``
    written normally."""
    rest = io.BytesIO()
    write_tar_stream(rest, tail)
    with gzip.open(path, "wb", compresslevel=9) as out:
        for block in blocks:
            if isinstance(block, int):
                for start in range(0, block, 1 << 20):
                    out.write(bytes(min(1 << 20, block - start)))
                out.write(bytes(-block % 512))
            else:
                out.write(block + bytes(-len(block) % 512))
        out.write(rest.getvalue())
    return path


def write_tar_stream(stream: io.BytesIO, members: list[Member]) -> None:
    with tarfile.open(fileobj=stream, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for _kind, name, payload, mode in members:
            assert isinstance(payload, bytes)
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(payload), mode, 1_700_000_000
            tar.addfile(info, io.BytesIO(payload))


@case("tar-huge-long-name-header")
def _(folder: Path, where: Path) -> Case:
    blocks: list[bytes | int] = [raw_tar_header("././@LongLink", tarfile.GNUTYPE_LONGNAME, HUGE_HEADER), HUGE_HEADER]
    path = write_raw_tar(folder / "affine.tgz", blocks, affine_members())
    return Case("tar-huge-long-name-header", path, f"a tar extension header of {HUGE_HEADER} bytes")


@case("tar-huge-pax-header")
def _(folder: Path, where: Path) -> Case:
    blocks: list[bytes | int] = [raw_tar_header("pax", tarfile.XHDTYPE, HUGE_HEADER), HUGE_HEADER]
    path = write_raw_tar(folder / "affine.tgz", blocks, affine_members())
    return Case("tar-huge-pax-header", path, f"a tar extension header of {HUGE_HEADER} bytes")


@case("tar-endless-long-name-chain")
def _(folder: Path, where: Path) -> Case:
    name = b"x" * 100 + b"\0"
    blocks: list[bytes | int] = [block for _ in range(2000)
                                 for block in (raw_tar_header("././@LongLink", tarfile.GNUTYPE_LONGNAME, len(name)), name)]
    path = write_raw_tar(folder / "affine.tgz", blocks, affine_members())
    return Case("tar-endless-long-name-chain", path, "tar extension headers in a row")


@case("tar-sparse-entry")
def _(folder: Path, where: Path) -> Case:
    blocks: list[bytes | int] = [raw_tar_header("1/model.py", tarfile.GNUTYPE_SPARSE, 0)]
    path = write_raw_tar(folder / "affine.tgz", blocks, affine_members())
    return Case("tar-sparse-entry", path, "sparse files are not allowed")
