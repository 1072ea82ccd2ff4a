"""The control socket: framing, and a real server and client on a temporary Unix socket."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import struct
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from clarad import control
from clarad.control import server as server_module
from clarad.errors import ClaradError, ControlError


@pytest.fixture
def sock_path() -> Iterator[Path]:
    # Unix socket paths are limited to ~107 bytes; pytest's tmp_path can be longer.
    root = Path(tempfile.mkdtemp(prefix="clctl", dir="/tmp"))
    try:
        yield control.socket_path(root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


async def handle(command: str, args: dict[str, Any]) -> Any:
    if command == "echo":
        return {"command": command, "args": args}
    if command == "refuse":
        raise ClaradError(f"no job {args.get('id')}")
    raise RuntimeError("boom")


def test_encode_prefixes_the_json_body_with_its_length() -> None:
    framed = control.encode({"ok": True, "result": [1, "x"]})
    (length,) = struct.unpack(">I", framed[:4])
    assert length == len(framed) - 4
    assert json.loads(framed[4:]) == {"ok": True, "result": [1, "x"]}


def test_encode_writes_unknown_types_as_strings() -> None:
    assert json.loads(control.encode({"path": Path("/a/b")})[4:]) == {"path": "/a/b"}


def test_encode_refuses_a_message_over_the_limit() -> None:
    with pytest.raises(ControlError, match="exceeds"):
        control.encode("x" * control.MAX_MESSAGE)


def test_socket_lives_in_the_run_directory() -> None:
    assert control.socket_path(Path("/var/lib/clara")) == Path("/var/lib/clara/run/clarad.sock")


def test_request_without_a_daemon_says_not_running(sock_path: Path) -> None:
    with pytest.raises(ControlError, match="clarad is not running"):
        control.request(sock_path, "status")


async def serving(sock_path: Path, *calls: tuple[str, dict[str, Any]]) -> list[Any]:
    server = await control.serve(sock_path, handle)
    results: list[Any] = []
    try:
        for command, args in calls:
            try:
                results.append(await asyncio.to_thread(control.request, sock_path, command, args, 5.0))
            except ControlError as exc:
                results.append(exc)
    finally:
        server.close()
        await server.wait_closed()
    return results


def test_handler_result_reaches_the_client(sock_path: Path) -> None:
    (result,) = asyncio.run(serving(sock_path, ("echo", {"id": "abc", "n": 2})))
    assert result == {"command": "echo", "args": {"id": "abc", "n": 2}}


def test_handler_refusal_becomes_control_error_with_its_reason(sock_path: Path) -> None:
    refused, internal = asyncio.run(serving(sock_path, ("refuse", {"id": "abc"}), ("crash", {})))
    assert isinstance(refused, ControlError) and str(refused) == "no job abc"
    assert isinstance(internal, ControlError) and str(internal) == "internal error: boom"


def test_run_directory_is_closed_to_others(sock_path: Path) -> None:
    asyncio.run(serving(sock_path))
    assert sock_path.parent.stat().st_mode & 0o777 == 0o750


def test_malformed_request_is_answered_not_dropped(sock_path: Path) -> None:
    async def scenario() -> dict[str, Any]:
        server = await control.serve(sock_path, handle)

        def raw() -> dict[str, Any]:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(5)
                sock.connect(str(sock_path))
                sock.sendall(control.encode(["not", "a", "request"]))
                header = sock.recv(4, socket.MSG_WAITALL)
                return json.loads(sock.recv(struct.unpack(">I", header)[0], socket.MSG_WAITALL))

        try:
            return await asyncio.to_thread(raw)
        finally:
            server.close()
            await server.wait_closed()

    response = asyncio.run(scenario())
    assert response["ok"] is False and response["error"].startswith("bad request")


def test_serve_refuses_while_another_server_answers(sock_path: Path) -> None:
    async def scenario() -> str:
        first = await control.serve(sock_path, handle)
        try:
            with pytest.raises(ClaradError) as refused:
                await control.serve(sock_path, handle)
            still = await asyncio.to_thread(control.request, sock_path, "echo", {}, 5.0)
            assert still == {"command": "echo", "args": {}}
            return str(refused.value)
        finally:
            first.close()
            await first.wait_closed()

    message = asyncio.run(scenario())
    assert message == f"another clarad is running (its control socket {sock_path} answers)"


def test_serve_replaces_a_dead_socket(sock_path: Path) -> None:
    sock_path.parent.mkdir(parents=True)
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(sock_path))
    dead.close()  # the file stays, nothing listens
    assert sock_path.exists()
    (result,) = asyncio.run(serving(sock_path, ("echo", {})))
    assert result == {"command": "echo", "args": {}}


def _connect(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(10)
    sock.connect(str(path))
    return sock


def test_an_idle_connection_is_closed_after_the_request_timeout(sock_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: a connection that sent nothing was kept open for ever (500 of them took clarad to its
    file-descriptor limit)."""
    monkeypatch.setattr(server_module, "REQUEST_TIMEOUT", 0.3)

    async def scenario() -> bytes:
        server = await control.serve(sock_path, handle)
        try:
            idle = await asyncio.to_thread(_connect, sock_path)
            with idle:
                return await asyncio.to_thread(idle.recv, 100)  # b"" once the server hangs up
        finally:
            server.close()
            await server.wait_closed()

    assert asyncio.run(scenario()) == b""


def test_connections_over_the_cap_close_the_oldest_idle_one_and_a_request_is_served(
        sock_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(server_module, "MAX_CONNECTIONS", 4)

    async def scenario() -> tuple[list[bytes], Any]:
        server = await control.serve(sock_path, handle)
        idle = [await asyncio.to_thread(_connect, sock_path) for _ in range(6)]
        try:
            answer = await asyncio.to_thread(control.request, sock_path, "echo", {"n": 1}, 5.0)
            evicted = [await asyncio.to_thread(sock.recv, 100) for sock in idle[:3]]  # b"": closed by clarad
            return evicted, answer
        finally:
            for sock in idle:
                sock.close()
            server.close()
            await server.wait_closed()

    evicted, answer = asyncio.run(scenario())
    assert evicted == [b"", b"", b""]
    assert answer == {"command": "echo", "args": {"n": 1}}


def test_a_request_over_its_limit_is_refused_without_being_read(sock_path: Path) -> None:
    """Before: up to 16 MiB were read per request (ten of them raised clarad's memory by 160 MB for good)."""
    async def scenario() -> dict[str, Any]:
        server = await control.serve(sock_path, handle)

        def oversized() -> dict[str, Any]:
            with _connect(sock_path) as sock:
                sock.sendall(struct.pack(">I", control.MAX_REQUEST + 1))  # and not one byte of it
                header = sock.recv(4, socket.MSG_WAITALL)
                return json.loads(sock.recv(struct.unpack(">I", header)[0], socket.MSG_WAITALL))

        try:
            return await asyncio.to_thread(oversized)
        finally:
            server.close()
            await server.wait_closed()

    assert asyncio.run(scenario()) == {
        "ok": False, "error": f"bad request: message of {control.MAX_REQUEST + 1} bytes exceeds {control.MAX_REQUEST}"}
    assert control.MAX_REQUEST <= 64 * 1024


def test_a_daemon_that_does_not_answer_in_time_is_one_line_not_a_traceback(sock_path: Path) -> None:
    """Before: `clarad status` against a busy daemon died with a raw TimeoutError traceback."""
    sock_path.parent.mkdir(parents=True)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(sock_path))
    listener.listen(1)  # accepts (in the kernel), never answers
    try:
        with pytest.raises(ControlError, match=r"^clarad did not answer within 0.3 s \(busy or stuck: see its log\)$"):
            control.request(sock_path, "status", timeout=0.3)
    finally:
        listener.close()
