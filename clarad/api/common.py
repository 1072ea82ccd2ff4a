"""What every service of Clara's API shares: response headers, turning refusals into them, the
answer to an RPC clarad cannot map, and moving files in chunks.

Clara's convention, which its clients check: the gRPC call succeeds and the response's header says
how it went: code 0, or a negative code with one-line messages. clarad's codes:

    -1  refused: the request, or what it brings, is not acceptable (the reason says why)
    -2  not found: no model, pipeline, job or payload with that id
    -3  not supported: an RPC of Clara's that has no meaning in clarad (the message says why)
    -4  internal error (a bug; the log has the traceback)

A server-streaming RPC that fails sends one response carrying the header. File bodies move in
chunks of ``CHUNK`` bytes, read and written in worker threads, so a large file never holds the loop.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, BinaryIO, Optional, TypeVar

from clarad import metadata
from clarad.api.protos import common_pb2
from clarad.api.rules import clara_seconds
from clarad.errors import ClaradError
from clarad.store import Store

log = logging.getLogger("clarad.api")

REFUSED, NOT_FOUND, UNSUPPORTED, INTERNAL = -1, -2, -3, -4
CHUNK = 1 << 20
MAX_MESSAGE = 8 << 20  # the largest request a client may send (Clara's clients send 64 KiB chunks)

Response = TypeVar("Response")


class NotFound(ClaradError):
    pass


class Unsupported(ClaradError):
    pass


def ok() -> common_pb2.ResponseHeader:
    return common_pb2.ResponseHeader(code=0)


def failure(exc: BaseException, rpc: str) -> common_pb2.ResponseHeader:
    """The header for an RPC that did not succeed; a bug is logged with its traceback."""
    if isinstance(exc, ClaradError):
        code = NOT_FOUND if isinstance(exc, NotFound) else UNSUPPORTED if isinstance(exc, Unsupported) else REFUSED
        log.info("API %s refused: %s", rpc, exc)
        return common_pb2.ResponseHeader(code=code, messages=[str(exc)])
    log.error("API %s failed", rpc, exc_info=exc)
    return common_pb2.ResponseHeader(code=INTERNAL, messages=[f"internal error: {exc}"])


def timestamp(unix: Optional[float]) -> common_pb2.Timestamp:
    return common_pb2.Timestamp(value=clara_seconds(unix))


def identifier(value: str) -> common_pb2.Identifier:
    return common_pb2.Identifier(value=value)


def add_metadata(store: Store, kind: str, owner: str, label: str, items: Any) -> dict[str, str]:
    """Add Clara metadata ``items`` (pairs) to ``owner`` by Clara's rules; its whole metadata after."""
    result = metadata.add(store.metadata(kind, owner), items, label)
    store.replace_metadata(kind, owner, result)
    return result


def remove_metadata(store: Store, kind: str, owner: str, label: str, keys: Any) -> dict[str, str]:
    result = metadata.remove(store.metadata(kind, owner), keys, label)
    store.replace_metadata(kind, owner, result)
    return result


def answers(response: Callable[..., Response]) -> Callable[[Callable[..., Awaitable[Response]]],
                                                             Callable[..., Awaitable[Response]]]:
    """For an RPC with one response: a refusal or a bug becomes ``response(header=failure)``."""
    def wrap(handler: Callable[..., Awaitable[Response]]) -> Callable[..., Awaitable[Response]]:
        @functools.wraps(handler)
        async def rpc(self: Any, request: Any, context: Any) -> Response:
            try:
                return await handler(self, request, context)
            except Exception as exc:
                return response(header=failure(exc, handler.__qualname__))
        return rpc
    return wrap


def streams(response: Callable[..., Response]) -> Callable[[Callable[..., AsyncIterator[Response]]],
                                                             Callable[..., AsyncIterator[Response]]]:
    """For an RPC with a stream of responses: a refusal or a bug ends it with one failure response."""
    def wrap(handler: Callable[..., AsyncIterator[Response]]) -> Callable[..., AsyncIterator[Response]]:
        @functools.wraps(handler)
        async def rpc(self: Any, request: Any, context: Any) -> AsyncIterator[Response]:
            try:
                async for item in handler(self, request, context):
                    yield item
            except Exception as exc:
                yield response(header=failure(exc, handler.__qualname__))
        return rpc
    return wrap


def refuse(response: Callable[..., Any], reason: str, stream: bool = False) -> Callable[..., Any]:
    """An RPC of Clara's that clarad does not serve: it answers ``reason`` with code -3."""
    header = common_pb2.ResponseHeader(code=UNSUPPORTED, messages=[reason])

    async def unary(self: Any, request: Any, context: Any) -> Any:
        return response(header=header)

    async def streamed(self: Any, request: Any, context: Any) -> AsyncIterator[Any]:
        yield response(header=header)

    return streamed if stream else unary


async def receive_file(chunks: AsyncIterator[bytes], target: Path, limit: int, what: str) -> int:
    """Write ``chunks`` to ``target`` (created, never overwritten); refuse past ``limit`` bytes.
    The caller removes ``target`` when this raises."""
    written = 0
    handle: BinaryIO = await asyncio.to_thread(open, target, "xb")
    try:
        async for data in chunks:
            written += len(data)
            if written > limit:
                raise ClaradError(f"{what}: larger than api_upload_max_bytes ({limit} bytes)")
            await asyncio.to_thread(handle.write, data)
    finally:
        await asyncio.to_thread(handle.close)
    return written


async def send_file(path: Path) -> AsyncIterator[bytes]:
    """The bytes of ``path`` in chunks (an empty file gives one empty chunk)."""
    handle: BinaryIO = await asyncio.to_thread(open, path, "rb")
    try:
        sent = False
        while True:
            data = await asyncio.to_thread(handle.read, CHUNK)
            if not data and sent:
                return
            sent = True
            yield data
            if not data:
                return
    finally:
        await asyncio.to_thread(handle.close)
