from clarad.api.protos import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union
from clarad.api.protos.common_pb2 import Identifier as Identifier
from clarad.api.protos.common_pb2 import Version as Version
from clarad.api.protos.common_pb2 import RequestHeader as RequestHeader
from clarad.api.protos.common_pb2 import ResponseHeader as ResponseHeader
from clarad.api.protos.common_pb2 import Timestamp as Timestamp

DESCRIPTOR: _descriptor.FileDescriptor

class ModelType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MODEL_TYPE_UNKNOWN: _ClassVar[ModelType]
    MODEL_TYPE_TENSOR_FLOW: _ClassVar[ModelType]
    MODEL_TYPE_TENSOR_RT: _ClassVar[ModelType]
    MODEL_TYPE_PY_TORCH: _ClassVar[ModelType]
MODEL_TYPE_UNKNOWN: ModelType
MODEL_TYPE_TENSOR_FLOW: ModelType
MODEL_TYPE_TENSOR_RT: ModelType
MODEL_TYPE_PY_TORCH: ModelType

class ModelCatalogDetails(_message.Message):
    __slots__ = ("catalog_id", "models")
    CATALOG_ID_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    catalog_id: _common_pb2.Identifier
    models: _containers.RepeatedCompositeFieldContainer[ModelDetails]
    def __init__(self, catalog_id: _Optional[_Union[_common_pb2.Identifier, _Mapping]] = ..., models: _Optional[_Iterable[_Union[ModelDetails, _Mapping]]] = ...) -> None: ...

class ModelDetails(_message.Message):
    __slots__ = ("model_id", "name", "type", "metadata")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    model_id: _common_pb2.Identifier
    name: str
    type: ModelType
    metadata: _containers.ScalarMap[str, str]
    def __init__(self, model_id: _Optional[_Union[_common_pb2.Identifier, _Mapping]] = ..., name: _Optional[str] = ..., type: _Optional[_Union[ModelType, str]] = ..., metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class ModelsAddMetadataRequest(_message.Message):
    __slots__ = ("header", "model_id", "metadata")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    HEADER_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.RequestHeader
    model_id: _common_pb2.Identifier
    metadata: _containers.ScalarMap[str, str]
    def __init__(self, header: _Optional[_Union[_common_pb2.RequestHeader, _Mapping]] = ..., model_id: _Optional[_Union[_common_pb2.Identifier, _Mapping]] = ..., metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class ModelsAddMetadataResponse(_message.Message):
    __slots__ = ("header", "model_id", "metadata")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    HEADER_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.ResponseHeader
    model_id: _common_pb2.Identifier
    metadata: _containers.ScalarMap[str, str]
    def __init__(self, header: _Optional[_Union[_common_pb2.ResponseHeader, _Mapping]] = ..., model_id: _Optional[_Union[_common_pb2.Identifier, _Mapping]] = ..., metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class ModelsCreateCatalogRequest(_message.Message):
    __slots__ = ("header",)
    HEADER_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.RequestHeader
    def __init__(self, header: _Optional[_Union[_common_pb2.RequestHeader, _Mapping]] = ...) -> None: ...

class ModelsCreateCatalogResponse(_message.Message):
    __slots__ = ("header", "catalog_id")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CATALOG_ID_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.ResponseHeader
    catalog_id: _common_pb2.Identifier
    def __init__(self, header: _Optional[_Union[_common_pb2.ResponseHeader, _Mapping]] = ..., catalog_id: _Optional[_Union[_common_pb2.Identifier, _Mapping]] = ...) -> None: ...

class ModelsCreateInstanceRequest(_message.Message):
    __slots__ = ("header",)
    HEADER_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.RequestHeader
    def __init__(self, header: _Optional[_Union[_common_pb2.RequestHeader, _Mapping]] = ...) -> None: ...

class ModelsCreateInstanceResponse(_message.Message):
    __slots__ = ("header", "instance_id")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.ResponseHeader
    instance_id: _common_pb2.Identifier
    def __init__(self, header: _Optional[_Union[_common_pb2.ResponseHeader, _Mapping]] = ..., instance_id: _Optional[_Union[_common_pb2.Identifier, _Mapping]] = ...) -> None: ...

class ModelsDeleteCatalogRequest(_message.Message):
    __slots__ = ("header", "catalog_id")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CATALOG_ID_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.RequestHeader
    catalog_id: _common_pb2.Identifier
    def __init__(self, header: _Optional[_Union[_common_pb2.RequestHeader, _Mapping]] = ..., catalog_id: _Optional[_Union[_common_pb2.Identifier, _Mapping]] = ...) -> None: ...

class ModelsDeleteCatalogResponse(_message.Message):
    __slots__ = ("header", "catalog_id")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CATALOG_ID_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.ResponseHeader
    catalog_id: _common_pb2.Identifier
    def __init__(self, header: _Optional[_Union[_common_pb2.ResponseHeader, _Mapping]] = ..., catalog_id: _Optional[_Union[_common_pb2.Identifier, _Mapping]] = ...) -> None: ...

class ModelsDeleteInstanceRequest(_message.Message):
    __slots__ = ("header", "instance_id")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.RequestHeader
    instance_id: _common_pb2.Identifier
    def __init__(self, header: _Optional[_Union[_common_pb2.RequestHeader, _Mapping]] = ..., instance_id: _Optional[_Union[_common_pb2.Identifier, _Mapping]] = ...) -> None: ...

class ModelsDeleteInstanceResponse(_message.Message):
    __slots__ = ("header", "instance_id")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.ResponseHeader
    instance_id: _common_pb2.Identifier
    def __init__(self, header: _Optional[_Union[_common_pb2.ResponseHeader, _Mapping]] = ..., instance_id: _Optional[_Union[_common_pb2.Identifier, _Mapping]] = ...) -> None: ...

class ModelsDeleteModelRequest(_message.Message):
    __slots__ = ("header", "model_id")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.RequestHeader
    model_id: _common_pb2.Identifier
    def __init__(self, header: _Optional[_Union[_common_pb2.RequestHeader, _Mapping]] = ..., model_id: _Optional[_Union[_common_pb2.Identifier, _Mapping]] = ...) -> None: ...

class ModelsDeleteModelResponse(_message.Message):
    __slots__ = ("header", "model_id")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.ResponseHeader
    model_id: _common_pb2.Identifier
    def __init__(self, header: _Optional[_Union[_common_pb2.ResponseHeader, _Mapping]] = ..., model_id: _Optional[_Union[_common_pb2.Identifier, _Mapping]] = ...) -> None: ...

class ModelsDownloadModelRequest(_message.Message):
    __slots__ = ("header", "model_id")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.RequestHeader
    model_id: _common_pb2.Identifier
    def __init__(self, header: _Optional[_Union[_common_pb2.RequestHeader, _Mapping]] = ..., model_id: _Optional[_Union[_common_pb2.Identifier, _Mapping]] = ...) -> None: ...

class ModelsDownloadModelResponse(_message.Message):
    __slots__ = ("header", "details", "data")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    DETAILS_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.ResponseHeader
    details: ModelDetails
    data: bytes
    def __init__(self, header: _Optional[_Union[_common_pb2.ResponseHeader, _Mapping]] = ..., details: _Optional[_Union[ModelDetails, _Mapping]] = ..., data: _Optional[bytes] = ...) -> None: ...

class ModelsListCatalogsRequest(_message.Message):
    __slots__ = ("header",)
    HEADER_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.RequestHeader
    def __init__(self, header: _Optional[_Union[_common_pb2.RequestHeader, _Mapping]] = ...) -> None: ...

class ModelsListCatalogsResponse(_message.Message):
    __slots__ = ("header", "catalogs")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CATALOGS_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.ResponseHeader
    catalogs: _containers.RepeatedCompositeFieldContainer[ModelCatalogDetails]
    def __init__(self, header: _Optional[_Union[_common_pb2.ResponseHeader, _Mapping]] = ..., catalogs: _Optional[_Iterable[_Union[ModelCatalogDetails, _Mapping]]] = ...) -> None: ...

class ModelsListInstancesRequest(_message.Message):
    __slots__ = ("header",)
    HEADER_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.RequestHeader
    def __init__(self, header: _Optional[_Union[_common_pb2.RequestHeader, _Mapping]] = ...) -> None: ...

class ModelsListInstancesResponse(_message.Message):
    __slots__ = ("header", "instances")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    INSTANCES_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.ResponseHeader
    instances: _containers.RepeatedCompositeFieldContainer[ModelCatalogDetails]
    def __init__(self, header: _Optional[_Union[_common_pb2.ResponseHeader, _Mapping]] = ..., instances: _Optional[_Iterable[_Union[ModelCatalogDetails, _Mapping]]] = ...) -> None: ...

class ModelsListModelsRequest(_message.Message):
    __slots__ = ("header",)
    HEADER_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.RequestHeader
    def __init__(self, header: _Optional[_Union[_common_pb2.RequestHeader, _Mapping]] = ...) -> None: ...

class ModelsListModelsResponse(_message.Message):
    __slots__ = ("header", "models")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.ResponseHeader
    models: _containers.RepeatedCompositeFieldContainer[ModelDetails]
    def __init__(self, header: _Optional[_Union[_common_pb2.ResponseHeader, _Mapping]] = ..., models: _Optional[_Iterable[_Union[ModelDetails, _Mapping]]] = ...) -> None: ...

class ModelsReadCatalogRequest(_message.Message):
    __slots__ = ("header", "catalog_id")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CATALOG_ID_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.RequestHeader
    catalog_id: _common_pb2.Identifier
    def __init__(self, header: _Optional[_Union[_common_pb2.RequestHeader, _Mapping]] = ..., catalog_id: _Optional[_Union[_common_pb2.Identifier, _Mapping]] = ...) -> None: ...

class ModelsReadCatalogResponse(_message.Message):
    __slots__ = ("header", "catalog_id", "models")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CATALOG_ID_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.ResponseHeader
    catalog_id: _common_pb2.Identifier
    models: _containers.RepeatedCompositeFieldContainer[ModelDetails]
    def __init__(self, header: _Optional[_Union[_common_pb2.ResponseHeader, _Mapping]] = ..., catalog_id: _Optional[_Union[_common_pb2.Identifier, _Mapping]] = ..., models: _Optional[_Iterable[_Union[ModelDetails, _Mapping]]] = ...) -> None: ...

class ModelsReadInstanceRequest(_message.Message):
    __slots__ = ("header", "instance_id")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.RequestHeader
    instance_id: _common_pb2.Identifier
    def __init__(self, header: _Optional[_Union[_common_pb2.RequestHeader, _Mapping]] = ..., instance_id: _Optional[_Union[_common_pb2.Identifier, _Mapping]] = ...) -> None: ...

class ModelsReadInstanceResponse(_message.Message):
    __slots__ = ("header", "instance_id", "models")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.ResponseHeader
    instance_id: _common_pb2.Identifier
    models: _containers.RepeatedCompositeFieldContainer[ModelDetails]
    def __init__(self, header: _Optional[_Union[_common_pb2.ResponseHeader, _Mapping]] = ..., instance_id: _Optional[_Union[_common_pb2.Identifier, _Mapping]] = ..., models: _Optional[_Iterable[_Union[ModelDetails, _Mapping]]] = ...) -> None: ...

class ModelsRemoveMetadataRequest(_message.Message):
    __slots__ = ("header", "model_id", "keys")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.RequestHeader
    model_id: _common_pb2.Identifier
    keys: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, header: _Optional[_Union[_common_pb2.RequestHeader, _Mapping]] = ..., model_id: _Optional[_Union[_common_pb2.Identifier, _Mapping]] = ..., keys: _Optional[_Iterable[str]] = ...) -> None: ...

class ModelsRemoveMetadataResponse(_message.Message):
    __slots__ = ("header", "model_id", "metadata")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    HEADER_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.ResponseHeader
    model_id: _common_pb2.Identifier
    metadata: _containers.ScalarMap[str, str]
    def __init__(self, header: _Optional[_Union[_common_pb2.ResponseHeader, _Mapping]] = ..., model_id: _Optional[_Union[_common_pb2.Identifier, _Mapping]] = ..., metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class ModelsUpdateCatalogRequest(_message.Message):
    __slots__ = ("header", "catalog_id", "model_ids")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CATALOG_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_IDS_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.RequestHeader
    catalog_id: _common_pb2.Identifier
    model_ids: _containers.RepeatedCompositeFieldContainer[_common_pb2.Identifier]
    def __init__(self, header: _Optional[_Union[_common_pb2.RequestHeader, _Mapping]] = ..., catalog_id: _Optional[_Union[_common_pb2.Identifier, _Mapping]] = ..., model_ids: _Optional[_Iterable[_Union[_common_pb2.Identifier, _Mapping]]] = ...) -> None: ...

class ModelsUpdateCatalogResponse(_message.Message):
    __slots__ = ("header", "catalog_id")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CATALOG_ID_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.ResponseHeader
    catalog_id: _common_pb2.Identifier
    def __init__(self, header: _Optional[_Union[_common_pb2.ResponseHeader, _Mapping]] = ..., catalog_id: _Optional[_Union[_common_pb2.Identifier, _Mapping]] = ...) -> None: ...

class ModelsUpdateInstanceRequest(_message.Message):
    __slots__ = ("header", "instance_id", "model_ids")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_IDS_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.RequestHeader
    instance_id: _common_pb2.Identifier
    model_ids: _containers.RepeatedCompositeFieldContainer[_common_pb2.Identifier]
    def __init__(self, header: _Optional[_Union[_common_pb2.RequestHeader, _Mapping]] = ..., instance_id: _Optional[_Union[_common_pb2.Identifier, _Mapping]] = ..., model_ids: _Optional[_Iterable[_Union[_common_pb2.Identifier, _Mapping]]] = ...) -> None: ...

class ModelsUpdateInstanceResponse(_message.Message):
    __slots__ = ("header", "instance_id")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.ResponseHeader
    instance_id: _common_pb2.Identifier
    def __init__(self, header: _Optional[_Union[_common_pb2.ResponseHeader, _Mapping]] = ..., instance_id: _Optional[_Union[_common_pb2.Identifier, _Mapping]] = ...) -> None: ...

class ModelsUploadModelRequest(_message.Message):
    __slots__ = ("header", "details", "data")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    DETAILS_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.RequestHeader
    details: ModelDetails
    data: bytes
    def __init__(self, header: _Optional[_Union[_common_pb2.RequestHeader, _Mapping]] = ..., details: _Optional[_Union[ModelDetails, _Mapping]] = ..., data: _Optional[bytes] = ...) -> None: ...

class ModelsUploadModelResponse(_message.Message):
    __slots__ = ("header", "details")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    DETAILS_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.ResponseHeader
    details: ModelDetails
    def __init__(self, header: _Optional[_Union[_common_pb2.ResponseHeader, _Mapping]] = ..., details: _Optional[_Union[ModelDetails, _Mapping]] = ...) -> None: ...
