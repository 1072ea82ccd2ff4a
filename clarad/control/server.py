"""The server side of the control socket, on the daemon's loop.

The socket lives in ``<state>/run/``, a directory only clarad's user (and group) may enter, created
before the socket is bound, so there is no window where the socket is open to everyone.

What a client may cost is bounded: ``REQUEST_TIMEOUT`` seconds to send its request, ``MAX_REQUEST``
bytes of memory for it, ``WRITE_TIMEOUT`` seconds to take the answer, and at most ``MAX_CONNECTIONS``
connections at once, so a flood never takes the daemon to its file-descriptor limit. A connection
over the cap closes the oldest one still sending its request (a person's `clarad status` is served
even while idle connections pile up); with none of those, it is told the daemon is busy.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from clarad.control.protocol import MAX_REQUEST, decode_length, encode
from clarad.errors import ClaradError
from clarad.logs import printable

log = logging.getLogger(__name__)

Handler = Callable[[str, dict[str, Any]], Awaitable[Any]]

MAX_CONNECTIONS = 64
ACCEPT_RETRY = 0.1  # seconds between accepts while the process is out of file descriptors
REQUEST_TIMEOUT = 10.0  # seconds from connecting to the last byte of the request
WRITE_TIMEOUT = 30.0  # seconds for the client to take the answer


class ControlServer:
    """The listening socket and the task accepting on it."""

    def __init__(self, listener: socket.socket, accepting: "asyncio.Task[None]") -> None:
        self.listener = listener
        self.accepting = accepting

    def close(self) -> None:
        self.accepting.cancel()
        self.listener.close()

    async def wait_closed(self) -> None:
        await asyncio.gather(self.accepting, return_exceptions=True)


async def serve(path: Path, handle: Handler) -> ControlServer:
    """Listen on ``path``; refuse if another daemon answers there, remove a dead socket."""
    path.parent.mkdir(mode=0o750, parents=True, exist_ok=True)
    os.chmod(path.parent, 0o750)
    if path.exists():
        if _answers(path):
            raise ClaradError(f"another clarad is running (its control socket {path} answers)")
        path.unlink()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    os.chmod(path, 0o660)  # clarad's group may connect; the directory already keeps others out
    listener.listen(128)
    listener.setblocking(False)
    return ControlServer(listener, asyncio.create_task(_accept_forever(listener, handle)))


async def _accept_forever(listener: socket.socket, handle: Handler) -> None:
    """Accept connections. Not asyncio's own server: at the file-descriptor limit its accept loop
    logs a traceback per refused accept and schedules a retry for each (hundreds of thousands of
    log lines a minute). Here clarad first frees the descriptor of the oldest idle connection, and
    otherwise waits and says so once a minute."""
    loop = asyncio.get_running_loop()
    connections: dict[asyncio.StreamWriter, bool] = {}  # oldest first; True while still sending its request
    tasks: set[asyncio.Task[None]] = set()
    said = 0.0

    def evict_oldest_idle() -> bool:
        idle = next((writer for writer, reading in connections.items() if reading), None)
        if idle is None:
            return False
        connections[idle] = False
        idle.transport.abort()
        return True

    async def one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            if len(connections) > MAX_CONNECTIONS and not evict_oldest_idle():
                await _answer(writer, {"ok": False, "error": f"clarad is busy: {MAX_CONNECTIONS} control connections "
                                                             "are open; try again"})
                return
            await _serve_one(reader, writer, handle, lambda: connections.__setitem__(writer, False))
        finally:
            connections.pop(writer, None)
            writer.close()

    while True:
        try:
            conn, _ = await loop.sock_accept(listener)
        except OSError as exc:  # EMFILE, ENFILE, ENOBUFS, ENOMEM: out of a resource
            if evict_oldest_idle():
                await asyncio.sleep(0)  # let the aborted connection let go of its descriptor
                continue
            if time.monotonic() >= said:
                log.error("control socket: cannot accept a connection (%s); trying again every %g s",
                          exc.strerror or exc, ACCEPT_RETRY)
                said = time.monotonic() + 60
            await asyncio.sleep(ACCEPT_RETRY)
            continue
        reader, writer = await asyncio.open_unix_connection(sock=conn, limit=MAX_REQUEST)
        connections[writer] = True
        task = asyncio.create_task(one(reader, writer))
        tasks.add(task)
        task.add_done_callback(tasks.discard)


async def _serve_one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, handle: Handler,
                     read: Callable[[], None]) -> None:
    """Read one request, answer it; ``read`` is called once the request is in."""
    try:
        body = await asyncio.wait_for(_read_request(reader), REQUEST_TIMEOUT)
        read()
    except (asyncio.IncompleteReadError, ConnectionError, asyncio.TimeoutError) as exc:
        log.debug("control connection dropped: %r", exc)
        return
    except ClaradError as exc:  # over MAX_REQUEST: not read
        await _answer(writer, {"ok": False, "error": f"bad request: {exc}"})
        return
    try:
        request = json.loads(body)
        result = await handle(str(request["command"]), dict(request.get("args") or {}))
        response: dict[str, Any] = {"ok": True, "result": result}
    except ClaradError as exc:  # one line, whatever names the request carried
        response = {"ok": False, "error": printable(str(exc))}
    except (ValueError, KeyError, TypeError, AttributeError, ArithmeticError, RecursionError) as exc:
        response = {"ok": False, "error": printable(f"bad request: {exc}")}
    except Exception as exc:  # a bug: say so instead of hanging up
        log.exception("control request failed")
        response = {"ok": False, "error": f"internal error: {exc}"}
    await _answer(writer, response)


async def _read_request(reader: asyncio.StreamReader) -> bytes:
    return await reader.readexactly(decode_length(await reader.readexactly(4), MAX_REQUEST))


async def _answer(writer: asyncio.StreamWriter, response: dict[str, Any]) -> None:
    try:
        writer.write(encode(response))
        await asyncio.wait_for(writer.drain(), WRITE_TIMEOUT)
    except ClaradError as exc:  # an answer over the limit: say so instead
        writer.write(encode({"ok": False, "error": str(exc)}))
    except (ConnectionError, asyncio.TimeoutError):
        writer.transport.abort()  # the client went away or does not read: nothing to tell it


def _answers(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        try:
            sock.connect(str(path))
            return True
        except OSError:
            return False
