"""Instance slots from discovered GPUs, with the stand-in that hosts without NVML use."""

from clarad.gpus import Gpu, NvmlGpus, Slot, StaticGpus, slots

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


def test_a_gpu_nvml_cannot_read_is_left_out_and_the_others_stay(monkeypatch) -> None:
    import pynvml

    class Handle:
        def __init__(self, index: int) -> None:
            self.index = index

    def name(handle: Handle) -> str:
        if handle.index == 1:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_GPU_IS_LOST)
        return f"GPU {handle.index}"

    class Memory:
        total, used = 80 << 30, 0

    for attribute, value in {
        "nvmlInit": lambda: None, "nvmlShutdown": lambda: None, "nvmlDeviceGetCount": lambda: 3,
        "nvmlDeviceGetHandleByIndex": Handle, "nvmlDeviceGetName": name,
        "nvmlDeviceGetMemoryInfo": lambda handle: Memory, "nvmlDeviceGetUUID": lambda handle: f"GPU-{handle.index}",
    }.items():
        monkeypatch.setattr(pynvml, attribute, value)
    assert [gpu.uuid for gpu in NvmlGpus().discover()] == ["GPU-0", "GPU-2"]
