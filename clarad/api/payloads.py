"""``nvidia.clara.platform.Payloads``: files of payloads through Clara's API.

Two kinds, as in Clara:

- a *reusable* payload (Payloads.Create) is a folder payloads/<id>/; Jobs.Create copies the ones it
  is given into the new job's input;
- a job's payload has the job's id and shows the job's folder as Clara showed it: the job's input
  files at its root, each operator's output under operators/<operator>/. Files can be uploaded to
  and removed from it until the job is started; then it is read-only.

Every name is checked (``rules.payload_file``) and must resolve inside the payload: a symlink an
operator left pointing elsewhere is not followed. An upload is written beside its target under a
temporary name and renamed over it, so a file is whole or absent.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import stat
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from clarad import metadata
from clarad.api.common import (
    NotFound,
    add_metadata,
    answers,
    identifier,
    ok,
    receive_file,
    remove_metadata,
    send_file,
    streams,
)
from clarad.api.protos import common_pb2, payloads_pb2, payloads_pb2_grpc
from clarad.api.rules import INPUT, OUTPUTS, job_payload_place, payload_file
from clarad.errors import ClaradError
from clarad.store import new_id

if TYPE_CHECKING:
    from clarad.daemon import Daemon

P = payloads_pb2


@dataclass(frozen=True)
class Payload:
    id: str
    type: int
    areas: dict[str, Path]  # name prefix -> folder ("" for the root)
    job: Optional[dict[str, Any]] = None

    @property
    def writable(self) -> bool:
        return self.job is None or bool(self.job["held"])

    def path(self, name: str) -> Path:
        """Where file ``name`` of this payload is; refused if that leads outside the payload."""
        if self.job is None:
            area, relative = "", payload_file(name)
        else:
            where, relative = job_payload_place(name)
            area = "" if where == INPUT else OUTPUTS + "/"
        root = self.areas[area]
        path = root / relative
        real_root = os.path.realpath(root)
        if relative and os.path.commonpath([real_root, os.path.realpath(path)]) != real_root:
            raise ClaradError(f"payload {self.id}: {name} leads outside the payload")
        return path


class PayloadsService(payloads_pb2_grpc.PayloadsServicer):
    def __init__(self, daemon: "Daemon") -> None:
        self.d = daemon

    def find(self, payload_id: common_pb2.Identifier) -> Payload:
        key = payload_id.value
        if not key.isalnum():
            raise ClaradError(f"payload_id {key!r}: give a payload's id")
        folder = self.d.layout.payloads / key
        if folder.is_dir():
            return Payload(key, P.PAYLOAD_TYPE_REUSABLE, {"": folder})
        job = self.d.store.job(key)
        if job is None or job["id"] != key.lower():
            raise NotFound(f"no payload {key!r}")
        job_dir = self.d.layout.job_dir(job["id"])
        return Payload(job["id"], P.PAYLOAD_TYPE_PIPELINE, {"": job_dir / INPUT, OUTPUTS + "/": job_dir / OUTPUTS}, job)

    def _writable(self, payload: Payload) -> None:
        if not payload.writable:
            raise ClaradError(f"payload {payload.id} belongs to job {payload.id}, which was started: it is read-only")

    @answers(P.PayloadsCreateResponse)
    async def Create(self, request: Any, context: Any) -> Any:
        tags = metadata.add({}, request.metadata.items(), "the payload")
        payload_id = new_id()
        (self.d.layout.payloads / payload_id).mkdir(mode=0o750)
        if tags:
            self.d.store.replace_metadata("payload", payload_id, tags)
        return P.PayloadsCreateResponse(header=ok(), payload_id=identifier(payload_id), type=P.PAYLOAD_TYPE_REUSABLE)

    @answers(P.PayloadsDeleteResponse)
    async def Delete(self, request: Any, context: Any) -> Any:
        payload = self.find(request.payload_id)
        if payload.job is not None:
            raise ClaradError(f"payload {payload.id} is job {payload.id}'s: it goes with the job")
        trash = self.d.layout.staging / f"deleted-{payload.id}"
        payload.areas[""].rename(trash)
        self.d.store.replace_metadata("payload", payload.id, {})
        await asyncio.to_thread(shutil.rmtree, trash, True)
        return P.PayloadsDeleteResponse(header=ok())

    @streams(P.PayloadsDetailsResponse)
    async def Details(self, request: Any, context: Any) -> AsyncIterator[Any]:
        payload = self.find(request.payload_id)
        files = await asyncio.to_thread(_files, payload.areas)
        common: dict[str, Any] = dict(header=ok(), payload_id=identifier(payload.id), type=payload.type,
                      job_id=identifier(payload.id if payload.job else ""),
                      metadata=self.d.store.metadata("payload", payload.id))
        for name, size, mode in files:
            yield P.PayloadsDetailsResponse(**common, file=P.PayloadFileDetails(name=name, size=size, mode=mode))
        if not files:
            yield P.PayloadsDetailsResponse(**common)

    @streams(P.PayloadsDownloadResponse)
    async def Download(self, request: Any, context: Any) -> AsyncIterator[Any]:
        payload = self.find(request.payload_id)
        path = payload.path(request.name)
        info = await asyncio.to_thread(_regular, path, f"payload {payload.id}: {request.name}")
        details = P.PayloadFileDetails(name=request.name, size=info.st_size, mode=stat.S_IMODE(info.st_mode))
        first = True
        async for data in send_file(path):
            yield P.PayloadsDownloadResponse(header=ok(), details=details, data=data) if first \
                else P.PayloadsDownloadResponse(data=data)
            first = False

    @answers(P.PayloadsUploadResponse)
    async def Upload(self, requests: AsyncIterator[Any], context: Any) -> Any:
        first = await anext(requests, None)
        if first is None:
            raise ClaradError("Upload: the stream held no request")
        payload = self.find(first.payload_id)
        self._writable(payload)
        name = first.details.name
        path = payload.path(name)
        if payload.job is not None and path.is_relative_to(payload.areas[OUTPUTS + "/"]):
            raise ClaradError(f"payload {payload.id}: {name}: operators/ holds the job's outputs; upload its input")
        mode = (first.details.mode & 0o755) or 0o644

        async def chunks() -> AsyncIterator[bytes]:
            yield first.data
            async for request in requests:
                yield request.data

        await asyncio.to_thread(path.parent.mkdir, parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{new_id()}.partial")
        try:
            size = await receive_file(chunks(), partial, self.d.settings.api_upload_max_bytes,
                                      f"payload {payload.id}: {name}")
            partial.chmod(mode)
            self._writable(self.find(first.payload_id))  # the job may have been started meanwhile
            partial.replace(path)
        finally:
            partial.unlink(missing_ok=True)
        return P.PayloadsUploadResponse(header=ok(), details=P.PayloadFileDetails(name=name, size=size, mode=mode))

    @answers(P.PayloadsRemoveResponse)
    async def Remove(self, request: Any, context: Any) -> Any:
        payload = self.find(request.payload_id)
        self._writable(payload)
        path = payload.path(request.name)
        await asyncio.to_thread(_regular, path, f"payload {payload.id}: {request.name}")
        path.unlink()
        return P.PayloadsRemoveResponse(header=ok())

    @answers(P.PayloadsAddMetadataResponse)
    async def AddMetadata(self, request: Any, context: Any) -> Any:
        payload = self.find(request.payload_id)
        result = add_metadata(self.d.store, "payload", payload.id, f"payload {payload.id}", request.metadata.items())
        return P.PayloadsAddMetadataResponse(header=ok(), payload_id=identifier(payload.id), metadata=result)

    @answers(P.PayloadsRemoveMetadataResponse)
    async def RemoveMetadata(self, request: Any, context: Any) -> Any:
        payload = self.find(request.payload_id)
        result = remove_metadata(self.d.store, "payload", payload.id, f"payload {payload.id}", request.keys)
        return P.PayloadsRemoveMetadataResponse(header=ok(), payload_id=identifier(payload.id), metadata=result)


def _regular(path: Path, what: str) -> os.stat_result:
    try:
        info = path.lstat()
    except FileNotFoundError:
        raise NotFound(f"{what}: no such file") from None
    if not stat.S_ISREG(info.st_mode):
        raise ClaradError(f"{what}: not a regular file")
    return info


def _files(areas: dict[str, Path]) -> list[tuple[str, int, int]]:
    """(name, size, mode) of every regular file of the payload, by name; links are not followed."""
    found = []
    for prefix, root in areas.items():
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            for entry in filenames:
                info = os.lstat(os.path.join(dirpath, entry))
                if stat.S_ISREG(info.st_mode) and not entry.endswith(".partial"):
                    name = prefix + os.path.relpath(os.path.join(dirpath, entry), root)
                    found.append((name, info.st_size, stat.S_IMODE(info.st_mode)))
    return sorted(found)
