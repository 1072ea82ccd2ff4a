"""Fuzz targets, shared by the default run (a few examples each: tests/unit/test_fuzz.py,
tests/e2e/test_fuzz_daemon.py) and the long run (bench/fuzz.py, ten thousand and more).

Each target is a function of a ``Tally`` returning a Hypothesis test. The property is the same
everywhere: clarad answers hostile input with its own refusal (a ClaradError with a one-line reason,
an answer on the control socket, exit status 1 or 2 of the CLI) or accepts it, and never with any
other exception, a hang, or a write outside where it may write. Every example is timed: one that
takes over ``STALL`` seconds would stall the daemon's loop (or, run in a worker, a drop).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import socket
import struct
import tarfile
import tempfile
import time
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clarad import archives, cli, control, repository
from clarad.archives import Limits
from clarad.control import Command
from clarad.errors import ModelRejected
from clarad.ingest import checked

T = TypeVar("T")
STALL = 1.0  # seconds: an example slower than this counts as a loop stall
MODELS = {"affine": "d" * 64, "seg": "e" * 64}
DEMO_MODEL = Path(__file__).resolve().parents[1] / "docs" / "demo" / "models" / "affine"


@dataclass
class Tally:
    """What a target saw: examples run, the slowest, those over STALL, and the failures."""

    examples: int = 0
    slowest: float = 0.0
    stalls: list[str] = field(default_factory=list)

    def measure(self, once: Callable[[], T], what: Any) -> T:
        """Run ``once`` (an example); one over STALL is run twice more and counts as a stall only if
        its fastest run is still over STALL (on a shared machine, the others' load alone can make a
        run slow; a stall that comes from the input comes back every time)."""
        began = time.monotonic()
        result = once()
        took = time.monotonic() - began
        for _again in range(2 if took > STALL else 0):
            began = time.monotonic()
            once()
            took = min(took, time.monotonic() - began)
        self.examples += 1
        self.slowest = max(self.slowest, took)
        if took > STALL:
            self.stalls.append(f"{took:.2f} s: {what!r}"[:300])
        return result


Target = Callable[[Tally], Callable[[], None]]


def run(target: Target, examples: int, tally: Tally) -> None:
    """Run ``target`` for ``examples`` examples (Hypothesis raises on a failure, after shrinking it)."""
    test = target(tally)
    settings(max_examples=examples, deadline=None, database=None, derandomize=False,
             suppress_health_check=list(HealthCheck))(test)()


def one_line(reason: str) -> bool:
    return bool(reason) and "\n" not in reason and not reason.startswith("internal error")


# -- values -----------------------------------------------------------------------------------------

NAMES = st.one_of(st.sampled_from(["prepare", "infer", "Infer", "a", "-", "_", "affine", "seg", "x" * 255]),
                  st.text(max_size=12))
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20))
JSON_LIKE = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
    st.text(max_size=8), inner, max_size=4), max_leaves=12)


# -- pipeline YAML ----------------------------------------------------------------------------------

_IO = st.fixed_dictionaries({}, optional={"from": NAMES, "name": NAMES, "path": st.text(max_size=10)})
OPERATOR = st.fixed_dictionaries({"name": NAMES}, optional={
    "command": st.lists(st.one_of(st.text(max_size=12), st.integers(), st.booleans()), max_size=4),
    "container": st.fixed_dictionaries({}, optional={"image": st.text(max_size=8), "command": st.lists(
        st.text(max_size=8), max_size=3), "variables": st.dictionaries(st.text(max_size=6), SCALARS, max_size=3)}),
    "input": st.lists(_IO, max_size=3), "output": st.lists(_IO, max_size=3),
    "models": st.lists(st.fixed_dictionaries({"name": NAMES}), max_size=3),
    "variables": st.dictionaries(st.text(max_size=8), SCALARS, max_size=3),
    "requests": st.fixed_dictionaries({}, optional={"gpu": st.integers(-2, 4), "memory": st.integers(-5, 2**70),
                                                    "cpu": st.floats()}),
    "services": JSON_LIKE, "unknown": JSON_LIKE,
})
PIPELINE = st.fixed_dictionaries({"name": NAMES, "operators": st.lists(OPERATOR, max_size=5)}, optional={
    "api-version": st.text(max_size=8), "timeout": SCALARS, "parameters": JSON_LIKE, "orchestrator": JSON_LIKE,
    "pull-secrets": JSON_LIKE, "surprise": JSON_LIKE})


def _yaml(document: Any) -> str:
    return yaml.safe_dump(document, allow_unicode=True)


YAML_TEXT = st.one_of(
    PIPELINE.map(_yaml),
    st.text(max_size=400),
    st.tuples(PIPELINE.map(_yaml), st.integers(0, 400), st.text(max_size=10)).map(
        lambda t: t[0][:t[1]] + t[2] + t[0][t[1]:]),  # a valid document with something cut in
    st.sampled_from(["!!python/object:os.system ['id']", "a: &a [*a]", "[" * 5000, "{a: " * 100, "? - - -",
                     "name: p\noperators: []\n", "%YAML 9.9\n---\n", "timeout: " + "9" * 5000,
                     "name: p\noperators: [{name: a, command: [x], requests: {memory: " + "9" * 5000 + "}}]", "\ufeffname: x", "name: p\r\noperators:\r\n"]),
)


def pipeline_yaml(tally: Tally) -> Callable[[], None]:
    def once(text: str) -> list[str]:
        return checked(text, "fuzz.yaml", MODELS, gpus=1, cpus=2, max_models=8)[1]

    @given(YAML_TEXT)
    def check(text: str) -> None:
        problems = tally.measure(lambda: once(text), text)
        assert all(one_line(problem) for problem in problems), problems

    return check


# -- model configurations ---------------------------------------------------------------------------

_PBTXT_FIELD = st.one_of(
    st.sampled_from(['name: "affine"', 'backend: "python"', 'platform: "onnxruntime_onnx"', "max_batch_size: 8",
                     'default_model_filename: "model.py"', 'input [{ name: "X" data_type: TYPE_FP32 dims: [ -1 ] }]',
                     'parameters { key: "k" value: { string_value: "v" } }', "version_policy: { all {} }",
                     'instance_group [{ kind: KIND_GPU count: 2 }]', "dynamic_batching {}", "bogus: 1", "{", "}"]),
    st.tuples(st.sampled_from(["name", "backend", "platform", "max_batch_size", "default_model_filename"]),
              st.one_of(st.text(max_size=20).map(json.dumps), st.integers().map(str), st.floats().map(str))).map(
        lambda kv: f"{kv[0]}: {kv[1]}"),
    st.text(max_size=30),
)
PBTXT = st.lists(_PBTXT_FIELD, max_size=8).map("\n".join)


def model_config(tally: Tally) -> Callable[[], None]:
    def once(config: str, extra: set[str]) -> str:
        with tempfile.TemporaryDirectory() as folder:
            model = Path(folder) / "affine"
            (model / "1").mkdir(parents=True)
            (model / "1" / "model.py").write_text("pass\n")
            for name in extra:
                (model / name).mkdir(exist_ok=True) if not name.endswith(".py") else (model / name).write_text("")
            (model / "config.pbtxt").write_text(config)
            try:
                info = repository.inspect_model(model)
            except ModelRejected as exc:
                return str(exc)
            # accepted: every load of it must work too
            repository.stamped_config(config, info.digest, "affine/config.pbtxt")
            return ""

    @given(PBTXT, st.sets(st.sampled_from(["1", "2", "01", "x", "model.py"]), max_size=3))
    def check(config: str, extra: set[str]) -> None:
        refusal = tally.measure(lambda: once(config, extra), config)
        assert not refusal or one_line(refusal), refusal

    return check


# -- archives ---------------------------------------------------------------------------------------

MEMBER = st.tuples(
    st.sampled_from(["file", "dir", "symlink", "hardlink", "fifo", "chr", "longname"]),
    st.one_of(st.sampled_from(["config.pbtxt", "1/model.py", "affine/config.pbtxt", "affine/1/model.py", "../x",
                               "/abs", "a/../../b", "1", "affine", ".", "", "a\\b", "x\x01"]), st.text(max_size=20)),
    st.binary(max_size=64),
    st.integers(0, 0o7777),
    st.one_of(st.sampled_from(["config.pbtxt", "../..", "/etc/passwd", "1/model.py", "affine"]), st.text(max_size=10)),
)
_TAR_KIND = {"file": tarfile.REGTYPE, "dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE, "hardlink": tarfile.LNKTYPE,
             "fifo": tarfile.FIFOTYPE, "chr": tarfile.CHRTYPE, "longname": tarfile.REGTYPE}


def _tar(members: list[tuple[str, str, bytes, int, str]], fmt: int) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz", format=fmt) as tar:
        for kind, name, data, mode, target in members:
            info = tarfile.TarInfo(name * (40 if kind == "longname" else 1) or "x")
            info.type, info.mode, info.linkname = _TAR_KIND[kind], mode, target
            info.size = len(data) if kind in ("file", "longname") else 0
            try:
                tar.addfile(info, io.BytesIO(data) if info.size else None)
            except (ValueError, UnicodeError):
                continue  # tarfile itself refuses to write this one
    return out.getvalue()


def _zip(members: list[tuple[str, str, bytes, int, str]]) -> bytes:
    out = io.BytesIO()
    with warnings.catch_warnings(), zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        warnings.simplefilter("ignore")  # duplicate names are wanted here
        for kind, name, data, mode, target in members:
            info = zipfile.ZipInfo(name or "x")
            kind_bits = {"dir": 0o040000, "symlink": 0o120000, "fifo": 0o010000, "chr": 0o020000}.get(kind, 0o100000)
            info.external_attr = (kind_bits | mode) << 16
            with contextlib.suppress(ValueError):
                zf.writestr(info, target.encode() if kind == "symlink" else data)
    return out.getvalue()


ARCHIVE = st.one_of(
    st.tuples(st.just(".tgz"), st.lists(MEMBER, max_size=6).map(lambda m: _tar(m, tarfile.PAX_FORMAT))),
    st.tuples(st.just(".tar.gz"), st.lists(MEMBER, max_size=6).map(lambda m: _tar(m, tarfile.GNU_FORMAT))),
    st.tuples(st.just(".zip"), st.lists(MEMBER, max_size=6).map(_zip)),
    st.tuples(st.sampled_from([".zip", ".tgz"]), st.binary(max_size=600)),
)
MUTATIONS = st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=6)


def model_archive(tally: Tally) -> Callable[[], None]:
    def once(suffix: str, raw: bytes) -> str:
        with tempfile.TemporaryDirectory() as folder:
            root = Path(folder)
            (root / "outside").mkdir()
            staging = root / "staging"
            staging.mkdir()
            path = root / f"affine{suffix}"
            path.write_bytes(raw)
            refusal = ""
            try:
                model = archives.extract(path, staging, Limits(max_entries=50, max_bytes=1 << 20, max_ratio=200))
                assert staging in model.parents
            except ModelRejected as exc:
                refusal = str(exc)
            assert os.listdir(root / "outside") == []
            assert sorted(os.listdir(root)) == sorted(["outside", "staging", path.name])
            return refusal

    @given(ARCHIVE, MUTATIONS)
    def check(archive: tuple[str, bytes], flips: list[tuple[int, int]]) -> None:
        suffix, data = archive
        raw = bytearray(data)
        for offset, value in flips:  # bytes changed at random, headers included
            if raw:
                raw[offset % len(raw)] = value
        refusal = tally.measure(lambda: once(suffix, bytes(raw)), (suffix, bytes(raw[:80])))
        assert not refusal or one_line(refusal), refusal

    return check


# -- the CLI ----------------------------------------------------------------------------------------

WORDS = st.sampled_from(["status", "models", "list", "show", "add", "remove", "rollback", "download", "pipelines",
                         "jobs", "create", "cancel", "logs", "config", "check", "--json", "--force", "-o", "out.zip",
                         "-i", "high", "--name", "--priority", "--state-dir", "--config", "affine", "p", "payload",
                         "0" * 32, "--help", "-h", "--version", "--", "-"])
ARGV = st.lists(st.one_of(WORDS, st.text(max_size=12)), max_size=6).filter(lambda argv: "run" not in argv)


def cli_arguments(tally: Tally, state_dir: Path) -> Callable[[], None]:
    """``clarad`` with random arguments against ``state_dir`` (a running daemon's, or none): exit 0,
    1 (one line on stderr) or 2 (usage), nothing else. Run from a scratch directory."""

    def once(argv: list[str]) -> tuple[object, str]:
        err = io.StringIO()
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
            try:
                code: object = cli.main([*argv, "--state-dir", str(state_dir)])
            except SystemExit as exit_:  # argparse: usage, --help, --version
                code = exit_.code if isinstance(exit_.code, int) else 2
        return code, err.getvalue()

    @given(ARGV)
    def check(argv: list[str]) -> None:
        code, err = tally.measure(lambda: once(argv), argv)
        assert code in (0, 1, 2), (code, err)
        if code == 1:
            assert err.count("\n") == 1 and one_line(err.strip()), err

    return check


# -- the control socket -----------------------------------------------------------------------------


def _arg_values(sandbox: Path) -> st.SearchStrategy[Any]:
    inside = st.sampled_from([str(sandbox / "payload.txt"), str(sandbox / "model"), str(sandbox / "nothing"),
                              str(sandbox), "relative/path", "", "/dev/null"])
    edges = st.sampled_from([0, -1, 2**31, 2**63, 2**70, 1e300, float("inf"), float("nan"), -0.0, True, None, [], {},
                             "affine", "p", "0" * 32, "low", "immediate", "%", "_", "\x1b[31m", "a\nb"])
    return st.one_of(inside, edges, JSON_LIKE)


KEYS = ["model", "id", "path", "pipeline", "name", "priority", "limit", "force", "revision"]


def _requests(sandbox: Path) -> st.SearchStrategy[bytes]:
    values = _arg_values(sandbox)
    arguments = st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=6), values, max_size=5)
    known = st.sampled_from([c.value for c in Command])
    framed = st.one_of(
        st.fixed_dictionaries({"command": known, "args": st.fixed_dictionaries({k: values for k in KEYS})}),
        st.fixed_dictionaries({"command": known, "args": arguments}),
        st.fixed_dictionaries({}, optional={"command": st.one_of(known, st.text(max_size=12), JSON_LIKE),
                                            "args": st.one_of(arguments, JSON_LIKE)}),
        JSON_LIKE,
    ).map(lambda message: _frame(json.dumps(message, default=str).encode()))
    return st.one_of(framed, st.binary(max_size=64), st.binary(max_size=40).map(_frame),
                     st.integers(0, 2**32 - 1).map(lambda n: struct.pack(">I", n)))


def _frame(body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + body


def _exchange(path: Path, request: bytes) -> bytes:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(30)
        sock.connect(str(path))
        sock.sendall(request)
        sock.shutdown(socket.SHUT_WR)  # the whole request is sent: a short one is answered or dropped now
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def control_messages(tally: Tally, state_dir: Path, sandbox: Path) -> Callable[[], None]:
    """Raw requests on a running daemon's control socket: an answer (a response, or the connection
    closed for a request that never arrived whole), never an internal error; the daemon answers
    ``status`` after each."""
    path = control.socket_path(state_dir)

    @given(_requests(sandbox))
    def check(request: bytes) -> None:
        answer = tally.measure(lambda: _exchange(path, request), request[:200])
        if answer:
            (length,) = struct.unpack(">I", answer[:4])
            response = json.loads(answer[4:4 + length])
            assert isinstance(response, dict) and isinstance(response.get("ok"), bool), response
            if not response["ok"]:
                assert one_line(response["error"]), response["error"]
        assert control.request(path, Command.STATUS, timeout=30)["pid"] > 0

    return check


def sandbox(where: Path) -> Path:
    """What control and CLI examples may name as paths: a payload file and a model directory."""
    where.mkdir(parents=True, exist_ok=True)
    (where / "payload.txt").write_text("1 2 3\n")
    if not (where / "model").exists():
        shutil.copytree(DEMO_MODEL, where / "model")
    return where


def pipeline_for_fuzzing() -> str:
    return "name: p\noperators:\n- name: op\n  command: [/bin/true]\n"

