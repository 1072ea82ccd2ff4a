"""``nvidia.clara.platform.Models``: the model repository through Clara's API.

An upload takes the same road as a drop: its zip is written into staging/ and handed to
``Ingest.add_model``, so it meets the same archive checks, validation, limits and revisions, and a
refused one answers with the reason a refused drop gets. The same name replaces the model (a new
revision), as in Clara; two uploads of one name at once both install whole, one after the other,
and the later one is live. Clara's catalogs and hand-managed instances have no place in clarad:
each job's instance gets the models its pipeline lists; ListInstances and ReadInstance show them.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clarad import metadata
from clarad.api.common import (
    NotFound,
    add_metadata,
    answers,
    identifier,
    ok,
    receive_file,
    refuse,
    remove_metadata,
    send_file,
    streams,
)
from clarad.api.protos import common_pb2, models_pb2, models_pb2_grpc
from clarad.archives import write_zip
from clarad.errors import ClaradError
from clarad.pipelines import NAME_RE
from clarad.repository import clara_type
from clarad.store import new_id

if TYPE_CHECKING:
    from clarad.daemon import Daemon

M = models_pb2
LIST_BATCH = 100  # models per ListModels response
TYPES = {"unknown": M.MODEL_TYPE_UNKNOWN, "tensorflow": M.MODEL_TYPE_TENSOR_FLOW, "tensorrt": M.MODEL_TYPE_TENSOR_RT,
         "pytorch": M.MODEL_TYPE_PY_TORCH}
TYPE_NAMES = {number: name for name, number in TYPES.items()}
NO_CATALOGS = ("clarad has no model catalogs: each job's Triton instance is given the models its pipeline's "
               "operators list under models:")
NO_INSTANCE_CHANGES = ("clarad starts, loads and stops Triton instances itself, one per job with the models its "
                       "pipeline lists; ListInstances and ReadInstance show them")


class ModelsService(models_pb2_grpc.ModelsServicer):
    def __init__(self, daemon: "Daemon") -> None:
        self.d = daemon

    # -- what a model looks like to Clara --------------------------------------------------------

    def details(self, model: dict[str, Any]) -> models_pb2.ModelDetails:
        return M.ModelDetails(model_id=identifier(model["id"]), name=model["name"],
                              type=TYPES[clara_type(model["backend"])],
                              metadata=self.d.store.metadata("model", model["id"]))

    def find(self, model_id: common_pb2.Identifier) -> dict[str, Any]:
        if not model_id.value:
            raise ClaradError("model_id is empty: give a model's id (or its name)")
        model = self.d.store.find_model(model_id.value)
        if model is None:
            raise NotFound(f"no model {model_id.value!r}")
        return model

    # -- the repository --------------------------------------------------------------------------

    @answers(M.ModelsUploadModelResponse)
    async def UploadModel(self, requests: AsyncIterator[Any], context: Any) -> Any:
        first = await anext(requests, None)
        if first is None:
            raise ClaradError("UploadModel: the stream held no request")
        name = first.details.name
        if not NAME_RE.match(name):
            raise ClaradError(f"details.name {name!r}: name the model (1-255 characters of A-Z a-z 0-9 - _)")
        claimed = TYPE_NAMES.get(first.details.type) if first.details.type else None
        tags = metadata.add({}, first.details.metadata.items(), f"model {name}")

        async def chunks() -> AsyncIterator[bytes]:
            yield first.data
            async for request in requests:
                yield request.data

        staging = self.d.layout.staging / f"upload-{new_id()}"
        staging.mkdir(mode=0o700)
        try:
            archive = staging / f"{name}.zip"
            await receive_file(chunks(), archive, self.d.settings.api_upload_max_bytes, f"model {name}")
            record = await self.d.ingest.add_model(archive, f"api:{context.peer()}", consume=False, name=name,
                                                   model_type=claimed)
        finally:
            await asyncio.to_thread(shutil.rmtree, staging, True)
        model = self.d.store.find_model(record["name"])
        assert model is not None
        if tags:
            self.d.store.replace_metadata("model", model["id"], tags)
        self.d.wake()
        return M.ModelsUploadModelResponse(header=ok(), details=self.details(model))

    @streams(M.ModelsDownloadModelResponse)
    async def DownloadModel(self, request: Any, context: Any) -> AsyncIterator[Any]:
        model = self.find(request.model_id)
        staging = self.d.layout.staging / f"download-{new_id()}"
        staging.mkdir(mode=0o700)
        try:
            archive, model = await self._zip(model["name"], staging)
            details, first = self.details(model), True
            async for data in send_file(archive):
                yield M.ModelsDownloadModelResponse(header=ok(), details=details, data=data) if first \
                    else M.ModelsDownloadModelResponse(data=data)
                first = False
        finally:
            await asyncio.to_thread(shutil.rmtree, staging, True)

    async def _zip(self, name: str, staging: Path) -> tuple[Path, dict[str, Any]]:
        """The live revision as a zip with the model's directory at its root; zipped again if the
        model was replaced meanwhile, so the zip is one whole revision."""
        archive = staging / f"{name}.zip"
        for _attempt in range(3):
            model = self.d.store.find_model(name)
            if model is None:
                raise NotFound(f"model {name} was removed")
            try:
                await asyncio.to_thread(write_zip, self.d.layout.models / name, archive)
            except FileNotFoundError:
                continue
            if self.d.store.model_digests().get(name) == model["digest"]:
                return archive, model
        raise ClaradError(f"model {name} kept changing while it was being zipped; try again")

    @streams(M.ModelsListModelsResponse)
    async def ListModels(self, request: Any, context: Any) -> AsyncIterator[Any]:
        models = [self.details(model) for model in self.d.store.models()]
        for start in range(0, max(len(models), 1), LIST_BATCH):
            yield M.ModelsListModelsResponse(header=ok(), models=models[start:start + LIST_BATCH])

    @answers(M.ModelsDeleteModelResponse)
    async def DeleteModel(self, request: Any, context: Any) -> Any:
        model = self.find(request.model_id)
        await self.d.models.remove(model["name"], force=False)
        self.d.wake()
        return M.ModelsDeleteModelResponse(header=ok(), model_id=identifier(model["id"]))

    # -- metadata --------------------------------------------------------------------------------

    @answers(M.ModelsAddMetadataResponse)
    async def AddMetadata(self, request: Any, context: Any) -> Any:
        model = self.find(request.model_id)
        result = add_metadata(self.d.store, "model", model["id"], f"model {model['name']}", request.metadata.items())
        return M.ModelsAddMetadataResponse(header=ok(), model_id=identifier(model["id"]), metadata=result)

    @answers(M.ModelsRemoveMetadataResponse)
    async def RemoveMetadata(self, request: Any, context: Any) -> Any:
        model = self.find(request.model_id)
        result = remove_metadata(self.d.store, "model", model["id"], f"model {model['name']}", request.keys)
        return M.ModelsRemoveMetadataResponse(header=ok(), model_id=identifier(model["id"]), metadata=result)

    # -- Triton instances, as clarad runs them -------------------------------------------------

    def _instance(self, instance_id: str) -> models_pb2.ModelCatalogDetails:
        instance = self.d.pool.instances.get(instance_id)
        if instance is None:
            raise NotFound(f"no Triton instance {instance_id!r} (clarad status lists them)")
        models = [m for m in (self.d.store.find_model(name) for name in sorted(instance.loaded)) if m is not None]
        return M.ModelCatalogDetails(catalog_id=identifier(instance.id), models=[self.details(m) for m in models])

    @streams(M.ModelsListInstancesResponse)
    async def ListInstances(self, request: Any, context: Any) -> AsyncIterator[Any]:
        instances = [self._instance(key) for key in list(self.d.pool.instances)]
        yield M.ModelsListInstancesResponse(header=ok(), instances=instances)

    @streams(M.ModelsReadInstanceResponse)
    async def ReadInstance(self, request: Any, context: Any) -> AsyncIterator[Any]:
        found = self._instance(request.instance_id.value)
        yield M.ModelsReadInstanceResponse(header=ok(), instance_id=found.catalog_id, models=found.models)

    CreateInstance = refuse(M.ModelsCreateInstanceResponse, NO_INSTANCE_CHANGES)
    UpdateInstance = refuse(M.ModelsUpdateInstanceResponse, NO_INSTANCE_CHANGES)
    DeleteInstance = refuse(M.ModelsDeleteInstanceResponse, NO_INSTANCE_CHANGES)
    CreateCatalog = refuse(M.ModelsCreateCatalogResponse, NO_CATALOGS)
    ListCatalogs = refuse(M.ModelsListCatalogsResponse, NO_CATALOGS, stream=True)
    ReadCatalog = refuse(M.ModelsReadCatalogResponse, NO_CATALOGS, stream=True)
    UpdateCatalog = refuse(M.ModelsUpdateCatalogResponse, NO_CATALOGS)
    DeleteCatalog = refuse(M.ModelsDeleteCatalogResponse, NO_CATALOGS)
