"""The GPUs a container operator was granted, as the runtime's device arguments. Pure.

With a CDI specification of NVIDIA's devices (``nvidia-ctk cdi generate``), podman gets each GPU by
its CDI name ``nvidia.com/gpu=<UUID>``, which brings its device node, the control devices and the
driver's libraries. Without one, podman gets the device nodes themselves: ``/dev/nvidia<minor>``
of each granted GPU and the control devices, and the image must carry the driver's user-space
libraries; MIG devices need CDI. docker takes ``--gpus device=<UUID>,...`` (NVIDIA's container
toolkit). Only the granted GPUs are given, never all.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from clarad.errors import ClaradError

CDI_KIND = "nvidia.com/gpu"
CONTROL_DEVICES = ("/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools")


def gpu_args(engine: str, uuids: list[str], cdi: bool, minors: Mapping[str, int]) -> list[str]:
    """Arguments giving ``uuids`` (and only them) to the container; ClaradError when that cannot be done."""
    if not uuids:
        return []
    if engine == "docker":
        return ["--gpus", f"device={','.join(uuids)}"]
    if cdi:
        return [arg for uuid in uuids for arg in ("--device", f"{CDI_KIND}={uuid}")]
    args = []
    for uuid in uuids:
        if uuid.startswith("MIG-"):
            raise ClaradError(f"GPU {uuid} is a MIG device: giving it to a container needs a CDI specification "
                              "(nvidia-ctk cdi generate --output=/etc/cdi/nvidia.yaml)")
        if uuid not in minors:
            raise ClaradError(f"GPU {uuid}: no /dev/nvidia<minor> found for it (/proc/driver/nvidia/gpus)")
        args += ["--device", f"/dev/nvidia{minors[uuid]}"]
    return args + [arg for device in CONTROL_DEVICES for arg in ("--device", device)]


def minors_from_information(texts: list[str]) -> dict[str, int]:
    """UUID -> device minor, from the driver's /proc/driver/nvidia/gpus/*/information files."""
    found = {}
    for text in texts:
        uuid = re.search(r"^GPU UUID:\s*(\S+)", text, re.M)
        minor = re.search(r"^Device Minor:\s*(\d+)", text, re.M)
        if uuid and minor:
            found[uuid.group(1)] = int(minor.group(1))
    return found


def has_cdi_gpus(specs: list[str]) -> bool:
    """Whether one of these CDI specification files (their text) describes NVIDIA's GPUs."""
    return any(re.search(r"""^kind:\s*["']?nvidia\.com/gpu["']?\s*$""", text, re.M) or
               f'"kind":"{CDI_KIND}"' in text.replace(" ", "") for text in specs)
