"""The real NVML path, on a host with an NVIDIA driver (`bash tests/run.sh tests/gpu`).

Checks that discovery matches what the driver reports and that a Triton instance pinned to a GPU
slot sees exactly that GPU. On hosts without a driver these tests are skipped with that reason;
everything around them is covered by tests/unit/test_gpus.py with the stand-in.
"""

from __future__ import annotations

import os
import subprocess

import pytest

from clarad.gpus import NvmlGpus, slots

pynvml = pytest.importorskip("pynvml")
try:
    pynvml.nvmlInit()
    DRIVER = True
except pynvml.NVMLError:
    DRIVER = False

pytestmark = pytest.mark.skipif(not DRIVER, reason="no NVIDIA driver on this host: the NVML path needs a GPU machine")


def test_discovery_matches_the_driver() -> None:
    found = NvmlGpus().discover()
    whole = [gpu for gpu in found if not gpu.uuid.startswith("MIG-")]  # a GPU in MIG mode counts as its MIG devices
    assert found and len({gpu.index for gpu in found}) == pynvml.nvmlDeviceGetCount()
    for gpu in whole:
        handle = pynvml.nvmlDeviceGetHandleByIndex(gpu.index)
        assert gpu.uuid == pynvml.nvmlDeviceGetUUID(handle)
        assert gpu.memory_total == pynvml.nvmlDeviceGetMemoryInfo(handle).total


def test_a_gpu_slot_pins_exactly_its_gpu() -> None:
    gpu = NvmlGpus().discover()[0]
    slot = slots([gpu], per_gpu=1, cpu_instances=1)[0]
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": slot.cuda_visible_devices}
    seen = subprocess.run(["nvidia-smi", "-L"], env=env, capture_output=True, text=True, check=True).stdout
    assert gpu.uuid in seen


def test_memory_readings_match_the_driver() -> None:
    readings = NvmlGpus().memory()
    assert [r.uuid for r in readings] == [g.uuid for g in NvmlGpus().discover()]
    for reading in readings:
        handle = pynvml.nvmlDeviceGetHandleByIndex(reading.index)
        assert reading.total == pynvml.nvmlDeviceGetMemoryInfo(handle).total
        assert 0 <= reading.used <= reading.total
