"""requests.cpu: operators pinned to the least used CPUs, through taskset."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from clarad.cpus import CpuPins, pinned_argv
from clarad.errors import ClaradError


def test_pins_go_to_the_least_used_cpus_and_come_back() -> None:
    pins = CpuPins([0, 1, 2, 3])
    first = pins.take(2)
    second = pins.take(2)
    assert (first, second) == ([0, 1], [2, 3])
    pins.give(first)
    assert pins.take(1) == [0]
    assert pins.take(0) == []


def test_more_cpus_than_clarad_may_use_is_refused() -> None:
    with pytest.raises(ClaradError, match="requests.cpu is 3, but clarad may use 2 CPU"):
        CpuPins([4, 7]).take(3)


def test_no_pin_leaves_the_command_alone() -> None:
    assert pinned_argv([], ["run", "x"]) == ["run", "x"]


@pytest.mark.skipif(shutil.which("taskset") is None, reason="taskset (util-linux) is not installed here")
def test_a_pinned_program_and_its_children_see_only_their_cpus() -> None:
    cpu = min(os.sched_getaffinity(0))
    code = "import os, subprocess, sys; print(sorted(os.sched_getaffinity(0)));" \
           "subprocess.run([sys.executable, '-c', 'import os; print(sorted(os.sched_getaffinity(0)))'])"
    done = subprocess.run(pinned_argv([cpu], [sys.executable, "-c", code]), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:2] == [f"[{cpu}]", f"[{cpu}]"]
