"""The control socket's protocol: framing, where the socket lives, and the commands it carries.

Framing: a 4-byte big-endian length, then that many bytes of UTF-8 JSON; one request and one
response per connection. A request is at most ``MAX_REQUEST`` bytes, a response ``MAX_MESSAGE``. A request is ``{"command": "jobs.show", "args": {...}}``; a response is
``{"ok": true, "result": ...}`` or ``{"ok": false, "error": "one line"}``.

``Command`` is the one table of commands: the CLI sends its members, the daemon's handlers are
looked up by them (``Command.JOBS_SHOW`` is answered by ``Handlers.jobs_show``).
"""

from __future__ import annotations

import json
import struct
from enum import Enum
from pathlib import Path
from typing import Any

from clarad.errors import ControlError

MAX_MESSAGE = 16 * 1024 * 1024  # a response (a long job list, a status with many instances)
MAX_REQUEST = 64 * 1024  # a request names things and paths: nothing near this
HEADER = struct.Struct(">I")


class Command(str, Enum):
    STATUS = "status"
    MODELS_LIST = "models.list"
    MODELS_SHOW = "models.show"
    MODELS_ADD = "models.add"
    MODELS_REMOVE = "models.remove"
    MODELS_ROLLBACK = "models.rollback"
    PIPELINES_LIST = "pipelines.list"
    PIPELINES_SHOW = "pipelines.show"
    PIPELINES_REMOVE = "pipelines.remove"
    PIPELINES_VALIDATE = "pipelines.validate"
    JOBS_LIST = "jobs.list"
    JOBS_SHOW = "jobs.show"
    JOBS_CREATE = "jobs.create"
    JOBS_CANCEL = "jobs.cancel"
    RELOAD = "reload"

    @property
    def handler(self) -> str:
        """The name of the method that answers it."""
        return self.name.lower()


def socket_path(state_dir: Path) -> Path:
    return state_dir / "run" / "clarad.sock"


def encode(message: Any) -> bytes:
    body = json.dumps(message, default=str).encode()
    if len(body) > MAX_MESSAGE:
        raise ControlError(f"message of {len(body)} bytes exceeds {MAX_MESSAGE}")
    return HEADER.pack(len(body)) + body


def decode_length(header: bytes, limit: int = MAX_MESSAGE) -> int:
    length: int = HEADER.unpack(header)[0]
    if length > limit:
        raise ControlError(f"message of {length} bytes exceeds {limit}")
    return length
