"""The control socket: how `clarad` commands reach the running daemon.

Framing: a 4-byte big-endian length, then that many bytes of UTF-8 JSON; one request and one
response per connection. A request is ``{"command": "jobs.show", "args": {...}}``; a response is
``{"ok": true, "result": ...}`` or ``{"ok": false, "error": "one line"}``.

The socket lives in ``<state>/run/``, a directory only clarad's user (and group) may enter, created
before the socket is bound, so there is no window where the socket is open to everyone.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import struct
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from clarad.errors import ClaradError, ControlError

log = logging.getLogger(__name__)

MAX_MESSAGE = 16 * 1024 * 1024
_HEADER = struct.Struct(">I")

Handler = Callable[[str, dict[str, Any]], Awaitable[Any]]


def socket_path(state_dir: Path) -> Path:
    return state_dir / "run" / "clarad.sock"


def encode(message: Any) -> bytes:
    body = json.dumps(message, default=str).encode()
    if len(body) > MAX_MESSAGE:
        raise ControlError(f"message of {len(body)} bytes exceeds {MAX_MESSAGE}")
    return _HEADER.pack(len(body)) + body


def _decode_length(header: bytes) -> int:
    length: int = _HEADER.unpack(header)[0]
    if length > MAX_MESSAGE:
        raise ControlError(f"message of {length} bytes exceeds {MAX_MESSAGE}")
    return length


# -- server (runs on the daemon's loop) --------------------------------------------------------


async def serve(path: Path, handle: Handler) -> asyncio.AbstractServer:
    """Listen on ``path``; refuse if another daemon answers there, remove a dead socket."""
    path.parent.mkdir(mode=0o750, parents=True, exist_ok=True)
    os.chmod(path.parent, 0o750)
    if path.exists():
        if _answers(path):
            raise ClaradError(f"another clarad is running (its control socket {path} answers)")
        path.unlink()

    async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = json.loads(await reader.readexactly(_decode_length(await reader.readexactly(4))))
            result = await handle(str(request["command"]), dict(request.get("args") or {}))
            response: dict[str, Any] = {"ok": True, "result": result}
        except ClaradError as exc:
            response = {"ok": False, "error": str(exc)}
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            log.debug("control connection dropped: %s", exc)
            writer.close()
            return
        except (ValueError, KeyError, TypeError) as exc:
            response = {"ok": False, "error": f"bad request: {exc}"}
        except Exception as exc:  # a bug: say so instead of hanging up
            log.exception("control request failed")
            response = {"ok": False, "error": f"internal error: {exc}"}
        try:
            writer.write(encode(response))
            await writer.drain()
        except ConnectionError:
            pass  # the client went away (e.g. a liveness probe); nothing to tell it
        finally:
            writer.close()

    server = await asyncio.start_unix_server(on_connection, path=str(path))
    os.chmod(path, 0o660)  # clarad's group may connect; the directory already keeps others out
    return server


def _answers(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        try:
            sock.connect(str(path))
            return True
        except OSError:
            return False


# -- client (the CLI) --------------------------------------------------------------------------


def request(path: Path, command: str, args: dict[str, Any] | None = None, timeout: float = 30.0) -> Any:
    """Send one request; return its result or raise ControlError with the daemon's reason."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(str(path))
        except FileNotFoundError:
            raise ControlError(f"clarad is not running (no control socket at {path})") from None
        except PermissionError:
            raise ControlError(f"permission denied on {path}: run as clarad's user or group") from None
        except OSError as exc:
            raise ControlError(f"cannot reach clarad at {path}: {exc.strerror or exc}") from None
        sock.sendall(encode({"command": command, "args": args or {}}))
        response = json.loads(_recv_exactly(sock, _decode_length(_recv_exactly(sock, 4))))
    if not response.get("ok"):
        raise ControlError(response.get("error") or "request failed")
    return response.get("result")


def _recv_exactly(sock: socket.socket, count: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < count:
        chunk = sock.recv(count - len(chunks))
        if not chunk:
            raise ControlError("clarad closed the connection before answering")
        chunks += chunk
    return bytes(chunks)
