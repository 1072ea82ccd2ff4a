"""The server side of the control socket, on the daemon's loop.

The socket lives in ``<state>/run/``, a directory only clarad's user (and group) may enter, created
before the socket is bound, so there is no window where the socket is open to everyone.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from clarad.control.protocol import decode_length, encode
from clarad.errors import ClaradError

log = logging.getLogger(__name__)

Handler = Callable[[str, dict[str, Any]], Awaitable[Any]]



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
            request = json.loads(await reader.readexactly(decode_length(await reader.readexactly(4))))
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
