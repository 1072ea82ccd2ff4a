"""``nvidia.clara.platform.Pipelines``: pipeline definitions through Clara's API.

A definition sent here takes a drop's road: written into staging/ and handed to
``Ingest.add_pipeline``, so it meets the same checks and a refused one answers with the same
reason. Pipelines are known by name in clarad (one definition per name, case-insensitive, as in
Clara's YAML); each has an id that stays when its definition is replaced. One definition file per
pipeline: api-version 0.2.0's ``import:`` of other files is not followed.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from clarad import metadata
from clarad.api.common import NotFound, add_metadata, answers, identifier, ok, remove_metadata, streams
from clarad.api.protos import common_pb2, pipelines_pb2, pipelines_pb2_grpc
from clarad.api.rules import downstream, roots
from clarad.errors import ClaradError
from clarad.pipelines import parse_pipeline
from clarad.store import new_id

if TYPE_CHECKING:
    from clarad.daemon import Daemon

P = pipelines_pb2
Node = P.PipelinesDetailsResponse.PipelineDagNode


class PipelinesService(pipelines_pb2_grpc.PipelinesServicer):
    def __init__(self, daemon: "Daemon") -> None:
        self.d = daemon

    def find(self, pipeline_id: common_pb2.Identifier) -> dict[str, Any]:
        if not pipeline_id.value:
            raise ClaradError("pipeline_id is empty: give a pipeline's id (or its name)")
        pipeline = self.d.store.find_pipeline(pipeline_id.value)
        if pipeline is None:
            raise NotFound(f"no pipeline {pipeline_id.value!r}")
        return pipeline

    async def _accept(self, received: list[Any], rpc: str) -> dict[str, Any]:
        """The one definition the stream brought, accepted as a dropped one would be."""
        files = [r.definition for r in received if r.definition.content]
        if len(files) != 1:
            raise ClaradError(f"{rpc}: send exactly one pipeline definition file (got {len(files)}); clarad does "
                              "not follow api-version 0.2.0's import: of other files")
        staging = self.d.layout.staging / f"pipeline-{new_id()}"
        staging.mkdir(mode=0o700)
        try:
            path = staging / "definition.yaml"
            path.write_text(files[0].content, encoding="utf-8")
            record = await self.d.ingest.add_pipeline(path)
        finally:
            await asyncio.to_thread(shutil.rmtree, staging, True)
        self.d.wake()
        return record

    @answers(P.PipelinesCreateResponse)
    async def Create(self, requests: AsyncIterator[Any], context: Any) -> Any:
        received = [request async for request in requests]
        if any(r.pipeline_id.value for r in received):
            raise ClaradError("Create: leave pipeline_id empty (clarad gives the id); Update changes a pipeline")
        tags = metadata.add({}, [item for r in received for item in r.metadata.items()], "the pipeline")
        record = await self._accept(received, "Create")
        if tags:
            self.d.store.replace_metadata("pipeline", record["id"], tags)
        return P.PipelinesCreateResponse(header=ok(), pipeline_id=identifier(record["id"]))

    @answers(P.PipelinesUpdateResponse)
    async def Update(self, requests: AsyncIterator[Any], context: Any) -> Any:
        received = [request async for request in requests]
        ids = {r.pipeline_id.value for r in received if r.pipeline_id.value}
        if len(ids) != 1:
            raise ClaradError("Update: name the one pipeline to update in pipeline_id")
        pipeline = self.find(identifier(ids.pop()))
        contents = [r.definition.content for r in received if r.definition.content]
        if len(contents) == 1:
            new_name = parse_pipeline(contents[0]).name
            if new_name.lower() != pipeline["name"].lower():
                raise ClaradError(f"Update: the definition names pipeline {new_name!r}, not {pipeline['name']!r}; "
                                  "Create adds a new pipeline")
        await self._accept(received, "Update")
        return P.PipelinesUpdateResponse(header=ok())

    @streams(P.PipelinesListResponse)
    async def List(self, request: Any, context: Any) -> AsyncIterator[Any]:
        pipelines = self.d.store.pipelines()
        for pipeline in pipelines:
            details = P.PipelinesListResponse.PipelineDetails(
                pipeline_id=identifier(pipeline["id"]), name=pipeline["name"],
                metadata=self.d.store.metadata("pipeline", pipeline["id"]))
            yield P.PipelinesListResponse(header=ok(), details=details)
        if not pipelines:
            yield P.PipelinesListResponse(header=ok())

    @streams(P.PipelinesDetailsResponse)
    async def Details(self, request: Any, context: Any) -> AsyncIterator[Any]:
        record = self.find(request.pipeline_id)
        pipeline = parse_pipeline(record["definition"])
        edges = downstream(pipeline)

        def node(name: str, depth: int) -> Any:
            after = edges[name] if depth < len(edges) else []
            return Node(name=name, next=[node(n, depth + 1) for n in after])

        yield P.PipelinesDetailsResponse(
            header=ok(), pipeline_id=identifier(record["id"]), name=record["name"],
            definition=P.PipelineDefinitionFile(path=f"{record['name']}.yaml", content=record["definition"]),
            dag=[node(name, 0) for name in roots(pipeline)],
            metadata=self.d.store.metadata("pipeline", record["id"]))

    @answers(P.PipelinesRemoveResponse)
    async def Remove(self, request: Any, context: Any) -> Any:
        self.d.ingest.remove_pipeline(self.find(request.pipeline_id)["name"], force=True)
        self.d.wake()
        return P.PipelinesRemoveResponse(header=ok())

    @answers(P.PipelinesAddMetadataResponse)
    async def AddMetadata(self, request: Any, context: Any) -> Any:
        pipeline = self.find(request.pipeline_id)
        result = add_metadata(self.d.store, "pipeline", pipeline["id"], f"pipeline {pipeline['name']}",
                              request.metadata.items())
        return P.PipelinesAddMetadataResponse(header=ok(), pipeline_id=identifier(pipeline["id"]), metadata=result)

    @answers(P.PipelinesRemoveMetadataResponse)
    async def RemoveMetadata(self, request: Any, context: Any) -> Any:
        pipeline = self.find(request.pipeline_id)
        result = remove_metadata(self.d.store, "pipeline", pipeline["id"], f"pipeline {pipeline['name']}",
                                 request.keys)
        return P.PipelinesRemoveMetadataResponse(header=ok(), pipeline_id=identifier(pipeline["id"]),
                                                 metadata=result)
