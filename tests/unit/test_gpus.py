"""Instance slots from discovered GPUs, with the stand-in that hosts without NVML use."""

import sys

import pytest

from clarad.gpus import Gpu, NvmlGpus, Slot, StaticGpus, slots
from tests.unit.fake_nvml import Device, FakeNvml

A100 = Gpu(0, "GPU-aaaa", "NVIDIA A100", 80 << 30)
H100 = Gpu(1, "GPU-bbbb", "NVIDIA H100", 80 << 30)


def test_each_gpu_gets_its_slots_pinned_by_uuid() -> None:
    assert slots([A100, H100], per_gpu=2, cpu_instances=4) == [
        Slot("gpu0-0", "GPU-aaaa"), Slot("gpu0-1", "GPU-aaaa"), Slot("gpu1-0", "GPU-bbbb"), Slot("gpu1-1", "GPU-bbbb"),
    ]


def test_no_gpu_gives_cpu_slots_that_hide_every_gpu() -> None:
    assert slots([], per_gpu=2, cpu_instances=3) == [Slot("cpu-0", ""), Slot("cpu-1", ""), Slot("cpu-2", "")]


def test_stand_in_returns_what_it_was_given_as_a_copy() -> None:
    gpus = StaticGpus([A100])
    found = gpus.discover()
    found.append(H100)
    assert gpus.discover() == [A100]


def test_nvml_discovery_never_raises() -> None:
    found = NvmlGpus().discover()  # no driver here: an empty list; on a GPU host: the GPUs
    assert isinstance(found, list) and all(isinstance(gpu, Gpu) for gpu in found)


def test_gpu_memory_is_exported_at_scrape_time() -> None:
    from clarad.metrics import Metrics

    metrics = Metrics()
    metrics.watch_gpus(StaticGpus([A100, H100], used=3 << 30))
    registry = metrics.registry
    assert registry.get_sample_value("clarad_gpu_memory_used_bytes", {"gpu": "1", "uuid": "GPU-bbbb"}) == 3 << 30
    assert registry.get_sample_value("clarad_gpu_memory_total_bytes", {"gpu": "0", "uuid": "GPU-aaaa"}) == 80 << 30


def test_no_gpu_exports_no_gpu_samples() -> None:
    from clarad.metrics import Metrics

    metrics = Metrics()
    metrics.watch_gpus(StaticGpus([]))
    assert metrics.registry.get_sample_value("clarad_gpu_memory_used_bytes", {"gpu": "0", "uuid": "GPU-aaaa"}) is None


@pytest.fixture
def nvml(monkeypatch: pytest.MonkeyPatch) -> FakeNvml:
    fake = FakeNvml()
    monkeypatch.setitem(sys.modules, "pynvml", fake.module())
    return fake


GiB = 1 << 30


def test_nvml_discovery_reads_every_gpu(nvml: FakeNvml) -> None:
    nvml.devices = [Device("GPU-a", "NVIDIA A100", 80 * GiB), Device("GPU-b", "NVIDIA L4", 24 * GiB, mig=[])]
    assert NvmlGpus().discover() == [Gpu(0, "GPU-a", "NVIDIA A100", 80 * GiB), Gpu(1, "GPU-b", "NVIDIA L4", 24 * GiB)]
    assert nvml.initialized == 1


def test_a_gpu_nvml_cannot_read_is_left_out_and_the_others_stay(nvml: FakeNvml) -> None:
    nvml.devices = [Device("GPU-0", "a", GiB), Device("GPU-1", "b", GiB, lost=True), Device("GPU-2", "c", GiB)]
    assert [gpu.uuid for gpu in NvmlGpus().discover()] == ["GPU-0", "GPU-2"]
    assert [reading.uuid for reading in NvmlGpus().memory()] == ["GPU-0", "GPU-2"]


def test_mig_devices_are_slots_of_their_own_with_their_own_memory(nvml: FakeNvml) -> None:
    migs = [Device("MIG-1", "NVIDIA A100 MIG 3g.40gb", 40 * GiB, used=GiB), Device("MIG-2", "NVIDIA A100 MIG 3g.40gb",
                                                                                   40 * GiB)]
    nvml.devices = [Device("GPU-a", "NVIDIA A100", 80 * GiB, mig=migs), Device("GPU-b", "NVIDIA T4", 16 * GiB)]
    found = NvmlGpus().discover()
    assert [(gpu.index, gpu.uuid, gpu.memory_total) for gpu in found] == [
        (0, "MIG-1", 40 * GiB), (0, "MIG-2", 40 * GiB), (1, "GPU-b", 16 * GiB)]
    assert [slot.cuda_visible_devices for slot in slots(found, per_gpu=1, cpu_instances=2)] == ["MIG-1", "MIG-2",
                                                                                               "GPU-b"]
    assert [(m.uuid, m.used) for m in NvmlGpus().memory()] == [("MIG-1", GiB), ("MIG-2", 0), ("GPU-b", 0)]


def test_no_driver_means_no_gpu(nvml: FakeNvml) -> None:
    nvml.driver = False
    nvml.devices = [Device("GPU-a", "a", GiB)]
    assert NvmlGpus().discover() == [] and NvmlGpus().memory() == []
