"""The client side of the control socket (the `clarad` command)."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

from clarad.control.protocol import decode_length, encode
from clarad.errors import ControlError


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
        try:
            sock.sendall(encode({"command": command, "args": args or {}}))
            response = json.loads(_recv_exactly(sock, decode_length(_recv_exactly(sock, 4))))
        except TimeoutError:
            raise ControlError(f"clarad did not answer within {timeout:g} s (busy or stuck: see its log)") from None
        except OSError as exc:
            raise ControlError(f"the connection to clarad failed: {exc.strerror or exc}") from None
        except ValueError:
            raise ControlError("clarad answered with something that is not JSON") from None
    if not isinstance(response, dict):
        raise ControlError("clarad answered with something that is not a response")
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
