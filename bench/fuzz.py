"""Fuzz clarad with many examples per target and print, per target: examples tried, failures, the
slowest example and the examples over 1 s (a stall of the daemon's loop, or of a drop).

    .venv-test/bin/python bench/fuzz.py                  # 10,000 examples per target (about 15 minutes on 2 cores)
    .venv-test/bin/python bench/fuzz.py --examples 500   # a quick look
    .venv-test/bin/python bench/fuzz.py --only control   # one target (pipeline, config, archive, control, cli)

The targets are the ones the default test run tries a few dozen times (tests/fuzzing.py); `control` and
`cli` run against a real `clarad run` started here on a temporary state directory. A failure prints
Hypothesis's smallest failing example; the exit status is 1 when any target failed or stalled.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests import fuzzing  # noqa: E402
from tests.e2e.clarad_process import Clarad  # noqa: E402
from tests.waiting import wait_for  # noqa: E402

TARGETS = ("pipeline", "config", "archive", "control", "cli")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=10_000)
    parser.add_argument("--only", choices=TARGETS, action="append")
    ns = parser.parse_args()
    chosen = ns.only or list(TARGETS)
    print(f"# .venv-test/bin/python bench/fuzz.py --examples {ns.examples}"
          + "".join(f" --only {t}" for t in ns.only or []), flush=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="clarad-fuzz-") as scratch:
        root = Path(scratch)
        sandbox = fuzzing.sandbox(root / "sandbox")
        daemon = None
        if {"control", "cli"} & set(chosen):
            daemon = Clarad(root / "state").start()
            daemon.drop_text(fuzzing.pipeline_for_fuzzing(), "pipelines", "p.yaml")
            wait_for(lambda: daemon.ask("pipelines.list"), 30, "the pipeline")
        targets = {
            "pipeline": fuzzing.pipeline_yaml,
            "config": fuzzing.model_config,
            "archive": fuzzing.model_archive,
            "control": lambda t: fuzzing.control_messages(t, daemon.state, sandbox),  # type: ignore[union-attr]
            "cli": lambda t: fuzzing.cli_arguments(t, daemon.state),  # type: ignore[union-attr]
        }
        try:
            os.chdir(sandbox)  # CLI examples name relative paths: these resolve in the sandbox
            for name in chosen:
                rows.append(_run(name, targets[name], ns.examples))
        finally:
            os.chdir("/")
            if daemon is not None:
                alive = daemon.proc is not None and daemon.proc.poll() is None
                daemon.stop_if_running()
                log = daemon.log.read_text()
                print(f"daemon alive at the end: {alive}; tracebacks in its log: {log.count('Traceback')}")
    print(f"\n{'target':<10} {'examples':>9} {'failures':>9} {'slowest s':>10} {'over 1 s':>9} {'wall s':>8}")
    for name, tally, failures, wall in rows:
        print(f"{name:<10} {tally.examples:>9} {failures:>9} {tally.slowest:>10.3f} {len(tally.stalls):>9} {wall:>8.0f}")
    for name, tally, _failures, _wall in rows:
        for stall in tally.stalls[:5]:
            print(f"stall in {name}: {stall}")
    return 1 if any(failures or tally.stalls for _n, tally, failures, _w in rows) else 0


def _run(name: str, target: fuzzing.Target, examples: int) -> tuple[str, fuzzing.Tally, int, float]:
    tally = fuzzing.Tally()
    began = time.monotonic()
    failures = 0
    print(f"{name}: {examples} examples ...", file=sys.stderr, flush=True)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            fuzzing.run(target, examples, tally)
    except Exception:  # Hypothesis's report of the smallest failing example
        failures = 1
        print(f"FAILURE in {name}:\n{traceback.format_exc()}", flush=True)
    return name, tally, failures, time.monotonic() - began


if __name__ == "__main__":
    sys.exit(main())
