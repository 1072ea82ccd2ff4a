"""`clarad run` on a host without NVIDIA driver, with stand-in GPUs in place of NVML's answer.

    python -m tests.e2e.standin_gpus COUNT run --state-dir ...

Everything else is the real daemon: only GPU discovery (and GPU memory readings) come from a
``StaticGpus`` with COUNT GPUs, so the GPU bookkeeping can be tried end to end here.
"""

import sys

from clarad import cli, daemon
from clarad.gpus import Gpu, StaticGpus


def standin(count: int) -> StaticGpus:
    return StaticGpus([Gpu(i, f"GPU-standin-{i}", "stand-in GPU", 16 << 30) for i in range(count)])


if __name__ == "__main__":
    gpus = standin(int(sys.argv[1]))
    daemon.NvmlGpus = lambda: gpus  # type: ignore[assignment,misc]
    sys.exit(cli.main(sys.argv[2:]))
