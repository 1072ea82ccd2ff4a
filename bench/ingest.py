"""Benchmark: model ingest by rename, and extraction of large model archives.

Two figures, each as a median and p90 over ``--runs`` runs, alternatives compared as ratios measured in the
same run (see docs/engineering.md, "Benchmarks"):

1. Ingest of a model directory dropped in ``inbox/models`` (``Ingest.add_model(..., consume=True)``) on a
   fresh state directory: total time, the install step (``repository.install``: a rename) and the digest
   (``repository.tree_digest``: reads every byte once), against ``cp -r`` and ``shutil.copytree`` of the same
   model on the same file system; and the install time of the large model against a tiny one.
2. Extraction of a large ``.tar.gz`` and ``.zip`` with ``archives.extract`` against ``tar -xzf`` and
   ``unzip -q`` on the same archive.

Run from the repository root with the virtualenv that has clarad installed:

    /tmp/venv/bin/python bench/ingest.py                  # 1 GiB models, 5 runs (a few minutes)
    /tmp/venv/bin/python bench/ingest.py --size 64M --archive-size 64M --runs 3
    /tmp/venv/bin/python bench/ingest.py --json > ingest.json

Everything is written under a temporary directory (``--dir`` chooses its parent) that is removed at the end.
The page cache cannot be dropped here: a warm-up run comes first and every figure is with the files cached.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

from clarad import archives
from clarad.ingest import Ingest
from clarad.layout import Layout
from clarad.metrics import Metrics
from clarad.repository import ModelRepository
from clarad.repository import files as repository  # the module whose functions the timer wraps
from clarad.store import Store

REPO = Path(__file__).resolve().parent.parent
DEMO_MODEL = REPO / "docs" / "demo" / "models" / "affine"
MODEL_NAME = "affine"
WEIGHTS = Path("1") / "weights.bin"
MiB = 1 << 20
INSTALL = repository.install  # the real one, for install_alone (StepTimer wraps the module's attribute)
ALONE_REPEATS = 9
UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_size(text: str) -> int:
    """``1G``, ``64M``, ``512K``, ``1GiB``, ``100`` (bytes); binary multiples."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGTkmgt]?)(?:i?[Bb])?\s*", text)
    if not match:
        raise argparse.ArgumentTypeError(f"{text!r}: a size is a number with an optional K, M or G suffix")
    value = int(float(match.group(1)) * UNITS[match.group(2).upper()])
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: the size must be at least 1 byte")
    return value


def human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- statistics --------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    xs = sorted(values)
    if len(xs) == 1:
        return xs[0]
    k = (len(xs) - 1) * q
    lo = int(k)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


class Figures:
    """Named series of per-run samples, in the order they were first recorded."""

    def __init__(self) -> None:
        self.series: dict[str, dict[str, Any]] = {}

    def add(self, name: str, value: float, unit: str, note: str = "") -> None:
        entry = self.series.setdefault(name, {"unit": unit, "note": note, "samples": []})
        entry["samples"].append(value)

    def summary(self) -> dict[str, dict[str, Any]]:
        return {
            name: {
                "median": percentile(s["samples"], 0.5),
                "p90": percentile(s["samples"], 0.9),
                "unit": s["unit"],
                "note": s["note"],
                "samples": s["samples"],
            }
            for name, s in self.series.items()
        }


# -- building the models and archives -----------------------------------------------------------


def write_weights(path: Path, size: int) -> None:
    """``size`` bytes that do not compress: one random MiB, repeated with a counter in its first 8 bytes.
    Deflate's 32 KiB window never sees the repeats, so archives keep a ratio near 1:1."""
    block = bytearray(os.urandom(MiB))
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as out:
        written, counter = 0, 0
        while written < size:
            block[:8] = counter.to_bytes(8, "little")
            n = min(MiB, size - written)
            out.write(block if n == MiB else block[:n])
            written += n
            counter += 1


def build_model(parent: Path, weights: int) -> Path:
    """A copy of the demo model under ``parent/affine``; with ``1/weights.bin`` of ``weights`` bytes if > 0."""
    parent.mkdir(parents=True, exist_ok=True)
    model = parent / MODEL_NAME
    shutil.copytree(DEMO_MODEL, model)
    if weights:
        write_weights(model / WEIGHTS, weights)
    return model


def make_tar_gz(model: Path, out: Path) -> None:
    with tarfile.open(out, "w:gz", compresslevel=1) as tar:
        tar.add(model, arcname=model.name)


def make_zip(model: Path, out: Path) -> None:
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for path in sorted(model.rglob("*")):
            zf.write(path, f"{model.name}/{path.relative_to(model).as_posix()}")


def tree_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and not p.is_symlink())


# -- timing helpers ----------------------------------------------------------------------------


def settle() -> None:
    """Write back dirty pages left by the previous step so they do not land in the next timed one."""
    os.sync()


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    settle()
    began = time.perf_counter()
    result = fn()
    return time.perf_counter() - began, result


def run_tool(argv: list[str]) -> None:
    subprocess.run(argv, check=True, stdin=subprocess.DEVNULL)


class StepTimer:
    """Wraps ``repository.install`` and ``repository.tree_digest`` so their time inside a real
    ``add_model`` call is recorded (``Ingest`` and ``inspect_model`` look both up at call time)."""

    def __init__(self) -> None:
        self.install: list[float] = []
        self.digest: list[float] = []
        self._saved: dict[str, Any] = {}

    def patch(self) -> None:
        for name, bucket in (("install", self.install), ("tree_digest", self.digest)):
            original = getattr(repository, name)
            self._saved[name] = original

            def wrapper(*args: Any, _original: Any = original, _bucket: list[float] = bucket, **kwargs: Any) -> Any:
                began = time.perf_counter()
                try:
                    return _original(*args, **kwargs)
                finally:
                    _bucket.append(time.perf_counter() - began)

            setattr(repository, name, wrapper)

    def restore(self) -> None:
        for name, original in self._saved.items():
            setattr(repository, name, original)

    def reset(self) -> None:
        self.install.clear()
        self.digest.clear()


@contextmanager
def step_timer() -> Iterator[StepTimer]:
    steps = StepTimer()
    steps.patch()
    try:
        yield steps
    finally:
        steps.restore()


def ingest_once(work: Path, model: Path, steps: StepTimer) -> dict[str, float]:
    """Rename ``model`` into a fresh state directory's inbox and ingest it; return the timings.
    The state directory is removed afterwards (not timed)."""
    state = work / "state"
    layout = Layout(state)
    layout.create()
    store = Store(layout.database)
    try:
        ingest = Ingest(layout, store, Metrics(), ModelRepository(layout, store, 3), archives.Limits(), gpus=0,
                        max_models=8)
        dropped = layout.inbox / "models" / MODEL_NAME
        if model.stat().st_dev != dropped.parent.stat().st_dev:
            raise SystemExit(f"{model} and {dropped.parent} are on different file systems: the bench needs one")
        expected = tree_bytes(model)
        model.rename(dropped)  # how a drop arrives: a rename into inbox/models on the same file system

        async def go() -> tuple[float, dict[str, Any]]:
            began = time.perf_counter()
            record = await ingest.add_model(dropped, f"inbox:{MODEL_NAME}", consume=True)
            return time.perf_counter() - began, record

        steps.reset()
        settle()
        total, record = asyncio.run(go())
        if not record.get("changed") or dropped.exists():
            raise SystemExit(f"ingest did not take the model: {record}")
        if tree_bytes(layout.models / MODEL_NAME) != expected:
            raise SystemExit("the installed model does not hold the bytes that were dropped")
        if len(steps.install) != 1 or len(steps.digest) != 1:
            raise SystemExit(f"expected one install and one digest per ingest, saw {steps.install} {steps.digest}")
        return {"total": total, "install": steps.install[0], "digest": steps.digest[0]}
    finally:
        store.close()
        shutil.rmtree(state, ignore_errors=True)


def install_alone(work: Path, model: Path) -> float:
    """Median time of ``repository.install`` called by itself (nothing read before it) on ``model``, over
    ALONE_REPEATS installs into a fresh layout; the model is renamed back after each (not timed)."""
    layout = Layout(work / "alone")
    layout.create()
    info = repository.ModelInfo(name=MODEL_NAME, backend="python", versions=[1], digest="0" * 64, size=0)
    samples = []
    try:
        settle()
        for _ in range(ALONE_REPEATS):
            began = time.perf_counter()
            INSTALL(model, layout.models, layout.revisions, info, None)
            samples.append(time.perf_counter() - began)
            (layout.models / MODEL_NAME).rename(model)
    finally:
        if (layout.models / MODEL_NAME).exists():
            (layout.models / MODEL_NAME).rename(model)
        shutil.rmtree(layout.root, ignore_errors=True)
    return percentile(samples, 0.5)


# -- 1. ingest by rename -----------------------------------------------------------------------


def bench_ingest(tmp: Path, size: int, runs: int, figures: Figures) -> dict[str, Any]:
    src = tmp / "src"
    log(f"[ingest] building the {human(size)} model and the tiny one ...")
    big = build_model(src / "big", size)
    tiny = build_model(src / "tiny", 0)
    big_bytes, tiny_bytes = tree_bytes(big), tree_bytes(tiny)
    settle()

    with step_timer() as steps:
        for run in range(-1, runs):  # run -1: warm-up, not recorded
            label = "warm-up" if run < 0 else f"run {run + 1}/{runs}"
            log(f"[ingest] {label}")
            work = tmp / "work"
            work.mkdir()
            try:
                # cp -r and copytree of the large model, to the same file system; cp's copy is then ingested.
                (work / "cp").mkdir()
                (work / "copytree").mkdir()
                cp_copy, tree_copy = work / "cp" / MODEL_NAME, work / "copytree" / MODEL_NAME
                cp_s, _ = timed(partial(run_tool, ["cp", "-r", str(big), str(cp_copy)]))
                began = time.perf_counter()
                os.sync()  # cp's copy reached only the page cache: the rest of its cost is writing it out
                cp_sync_s = cp_s + time.perf_counter() - began
                ct_s, _ = timed(partial(shutil.copytree, big, tree_copy, symlinks=True))
                shutil.rmtree(work / "copytree")
                big_t = ingest_once(work, cp_copy, steps)

                shutil.copytree(tiny, work / "tiny" / MODEL_NAME, symlinks=True)
                tiny_t = ingest_once(work, work / "tiny" / MODEL_NAME, steps)
                pair = [("big", big), ("tiny", tiny)] if run % 2 else [("tiny", tiny), ("big", big)]
                alone = {name: install_alone(work, model) for name, model in pair}
            finally:
                shutil.rmtree(work, ignore_errors=True)
            if run < 0:
                continue
            rest = big_t["total"] - big_t["install"] - big_t["digest"]
            figures.add("add_model, large model (total)", big_t["total"] * 1e3, "ms",
                        "Ingest.add_model(consume=True), fresh state dir")
            figures.add("  of which digest (tree_digest)", big_t["digest"] * 1e3, "ms", "reads every byte once")
            figures.add("  of which install (rename)", big_t["install"] * 1e6, "us", "repository.install")
            figures.add("  of which the rest", rest * 1e3, "ms", "staging, config parse, sqlite commit, cleanup")
            figures.add("digest throughput", big_bytes / big_t["digest"] / 1e6, "MB/s", "sha256 over cached pages")
            figures.add("cp -r, large model", cp_s * 1e3, "ms", "subprocess, same file system")
            figures.add("cp -r, then sync", cp_sync_s * 1e3, "ms", "the copy written out to disk")
            figures.add("shutil.copytree, large model", ct_s * 1e3, "ms", "same file system")
            figures.add("add_model, tiny model (total)", tiny_t["total"] * 1e3, "ms", "no weights")
            figures.add("install (rename), tiny model", tiny_t["install"] * 1e6, "us", "repository.install")
            figures.add("ratio cp -r / add_model", cp_s / big_t["total"], "x", ">1: ingest is faster than a copy")
            figures.add("ratio copytree / add_model", ct_s / big_t["total"], "x", ">1: ingest is faster than a copy")
            figures.add("ratio (cp -r, then sync) / add_model", cp_sync_s / big_t["total"], "x",
                        ">1: ingest is faster than a durable copy")
            figures.add("ratio cp -r / install", cp_s / big_t["install"], "x", "copying vs renaming")
            figures.add("ratio copytree / install", ct_s / big_t["install"], "x", "copying vs renaming")
            figures.add("ratio install large / install tiny", big_t["install"] / tiny_t["install"], "x",
                        "in add_model; the large one runs after a long hash (cold CPU caches)")
            figures.add("install alone, large model", alone["big"] * 1e6, "us",
                        f"repository.install by itself, median of {ALONE_REPEATS}")
            figures.add("install alone, tiny model", alone["tiny"] * 1e6, "us",
                        f"repository.install by itself, median of {ALONE_REPEATS}")
            figures.add("ratio install alone large / tiny", alone["big"] / alone["tiny"], "x",
                        "~1: install does not grow with size")
    return {"model_bytes": big_bytes, "tiny_model_bytes": tiny_bytes}


# -- 2. extraction throughput ------------------------------------------------------------------


def bench_extract(tmp: Path, size: int, runs: int, figures: Figures, reuse: Path | None) -> dict[str, Any]:
    src = tmp / "src"
    if reuse is not None:
        model = reuse
    else:
        log(f"[extract] building the {human(size)} model ...")
        model = build_model(src / "archive", size)
    unpacked = tree_bytes(model)
    tgz, zipped = tmp / f"{MODEL_NAME}.tar.gz", tmp / f"{MODEL_NAME}.zip"
    log(f"[extract] writing {tgz.name} (gzip level 1) ...")
    make_tar_gz(model, tgz)
    log(f"[extract] writing {zipped.name} (deflate level 1) ...")
    make_zip(model, zipped)
    settle()

    notes: list[str] = []
    have_tar, have_unzip = shutil.which("tar") is not None, shutil.which("unzip") is not None
    if not have_tar:
        notes.append("tar not found on PATH: the tar -xzf comparison is skipped")
    if not have_unzip:
        notes.append("unzip not found on PATH: the unzip -q comparison is skipped "
                     "(install it: apt-get install -y unzip)")
    for note in notes:
        log(f"[extract] NOTE: {note}")

    out = tmp / "out"

    def clarad(archive: Path) -> Callable[[], None]:
        def go() -> None:
            root = archives.extract(archive, out, archives.Limits())
            if (root / WEIGHTS).stat().st_size != (model / WEIGHTS).stat().st_size:
                raise SystemExit(f"archives.extract({archive.name}) wrote the wrong number of bytes")
        return go

    def tool(argv: list[str]) -> Callable[[], None]:
        return lambda: run_tool(argv)

    steps: list[tuple[str, Callable[[], None]]] = [("clarad .tar.gz", clarad(tgz)), ("clarad .zip", clarad(zipped))]
    if have_tar:
        steps.append(("tar -xzf", tool(["tar", "-xzf", str(tgz), "-C", str(out)])))
    if have_unzip:
        steps.append(("unzip -q", tool(["unzip", "-q", str(zipped), "-d", str(out)])))

    for run in range(-1, runs):
        log(f"[extract] {'warm-up' if run < 0 else f'run {run + 1}/{runs}'}")
        seconds: dict[str, float] = {}
        shift = max(run, 0) % len(steps)  # rotate the order from run to run
        for name, fn in steps[shift:] + steps[:shift]:
            out.mkdir()  # empty, as archives.extract requires
            try:
                seconds[name], _ = timed(fn)
                if tree_bytes(out / MODEL_NAME) != unpacked:
                    raise SystemExit(f"{name} did not unpack the whole model")
            finally:
                shutil.rmtree(out, ignore_errors=True)
        if run < 0:
            continue
        for name, s in seconds.items():
            figures.add(f"{name} throughput", unpacked / s / 1e6, "MB/s", "unpacked bytes / wall time")
        for name, s in seconds.items():
            figures.add(f"{name} time", s * 1e3, "ms", "wall time, output into the page cache")
        if have_tar:
            figures.add("ratio clarad/tar (.tar.gz)", seconds["tar -xzf"] / seconds["clarad .tar.gz"], "x",
                        "throughput ratio; <1: clarad slower")
        if have_unzip:
            figures.add("ratio clarad/unzip (.zip)", seconds["unzip -q"] / seconds["clarad .zip"], "x",
                        "throughput ratio; <1: clarad slower")
    return {"unpacked_bytes": unpacked, "tar_gz_bytes": tgz.stat().st_size, "zip_bytes": zipped.stat().st_size,
            "notes": notes}


# -- output ------------------------------------------------------------------------------------


def fmt(value: float, unit: str) -> str:
    if unit == "x":
        return f"{value:,.2f}x" if value < 100 else f"{value:,.0f}x"
    if unit == "us":
        return f"{value:,.1f} us"
    if unit == "ms":
        return f"{value:,.3f} ms" if value < 10 else f"{value:,.1f} ms"
    return f"{value:,.0f} {unit}"


def table(title: str, summary: dict[str, dict[str, Any]]) -> list[str]:
    width = max(len(name) for name in summary)
    lines = [title, f"  {'':<{width}}  {'median':>14}  {'p90':>14}  note", "  " + "-" * (width + 50)]
    for name, s in summary.items():
        lines.append(f"  {name:<{width}}  {fmt(s['median'], s['unit']):>14}  {fmt(s['p90'], s['unit']):>14}  {s['note']}")
    return lines


def git_commit() -> str:
    try:
        head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=True).stdout.strip()
        return head + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=parse_size, default=1 << 30,
                        help="weights file of the large model for the ingest figures (default 1G)")
    parser.add_argument("--archive-size", type=parse_size, default=1 << 30,
                        help="weights file of the model in the archives (default 1G)")
    parser.add_argument("--runs", type=int, default=5, help="timed runs after one warm-up (default 5)")
    parser.add_argument("--dir", type=Path, default=None, help="parent of the temporary directory (default: $TMPDIR or /tmp)")
    parser.add_argument("--only", choices=("ingest", "extract"), help="run one of the two benchmarks")
    parser.add_argument("--json", action="store_true", help="print JSON on stdout instead of the table")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")

    command = shlex.join(getattr(sys, "orig_argv", [sys.executable, *sys.argv]))
    parent = args.dir or Path(tempfile.gettempdir())
    parent.mkdir(parents=True, exist_ok=True)
    need = 0
    if args.only != "extract":
        need = max(need, 3 * args.size)  # source, cp's copy, copytree's copy
    if args.only != "ingest":
        need += 4 * args.archive_size  # source (unless shared), .tar.gz, .zip, one extraction
    free = shutil.disk_usage(parent).free
    if need > free * 0.9:
        parser.error(f"{parent} has {human(free)} free; this needs about {human(need)}")

    started = time.time()
    tmp = Path(tempfile.mkdtemp(prefix="clarad-bench-ingest-", dir=parent))
    result: dict[str, Any] = {
        "command": command,
        "environment": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "clarad_commit": git_commit(),
            "tmp_dir": str(tmp),
        },
        "parameters": {"size": args.size, "archive_size": args.archive_size, "runs": args.runs},
        "notes": [
            ("The page cache cannot be dropped here: after one untimed warm-up run, every source file is in the "
             "page cache, so the figures are for cached reads."),
            ("os.sync() runs before each timed step (not timed), so writeback of an earlier step does not land in "
             "it; nothing timed calls fsync except sqlite's commit inside add_model."),
            ("p90 is the 90th percentile of the per-run values (linear interpolation); ratios are computed per run "
             "from timings of the same run, then summarised."),
        ],
    }
    lines = [f"$ {command}", ""]
    try:
        if args.only != "extract":
            figures = Figures()
            info = bench_ingest(tmp, args.size, args.runs, figures)
            result["ingest"] = {**info, "figures": figures.summary()}
        if args.only != "ingest":
            figures = Figures()
            reuse = tmp / "src" / "big" / MODEL_NAME if args.only != "extract" and args.archive_size == args.size else None
            info = bench_extract(tmp, args.archive_size, args.runs, figures, reuse)
            result["extract"] = {**info, "figures": figures.summary()}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    result["elapsed_s"] = round(time.time() - started, 1)

    if args.json:
        print(json.dumps(result, indent=2))
        return 0

    env = result["environment"]
    lines.append(f"clarad {env['clarad_commit']}, Python {env['python']}, {env['platform']}, {env['cpus']} CPUs; "
                 f"temp dir {env['tmp_dir']} (removed)")
    lines.append(f"{args.runs} timed runs after 1 warm-up; median and p90 over the runs; "
                 f"elapsed {result['elapsed_s']:.0f} s")
    for note in result["notes"]:
        lines.append(f"NOTE: {note}")
    if "ingest" in result:
        r = result["ingest"]
        lines += ["", *table(f"1. Ingest by rename: model of {human(r['model_bytes'])} "
                             f"(weights {human(args.size)}), tiny model of {human(r['tiny_model_bytes'])}",
                             r["figures"])]
    if "extract" in result:
        r = result["extract"]
        lines += ["", *table(f"2. Extraction: {human(r['unpacked_bytes'])} unpacked; .tar.gz {human(r['tar_gz_bytes'])}, "
                             f".zip {human(r['zip_bytes'])} (level 1); MB = 10^6 bytes of unpacked data",
                             r["figures"])]
        for note in r["notes"]:
            lines.append(f"NOTE: {note}")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
