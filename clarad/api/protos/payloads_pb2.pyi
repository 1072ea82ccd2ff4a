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

class PayloadType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PAYLOAD_TYPE_UNKNOWN: _ClassVar[PayloadType]
    PAYLOAD_TYPE_PIPELINE: _ClassVar[PayloadType]
    PAYLOAD_TYPE_REUSABLE: _ClassVar[PayloadType]
PAYLOAD_TYPE_UNKNOWN: PayloadType
PAYLOAD_TYPE_PIPELINE: PayloadType
PAYLOAD_TYPE_REUSABLE: PayloadType

class PayloadFileDetails(_message.Message):
    __slots__ = ("mode", "size", "name")
    MODE_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    mode: int
    size: int
    name: str
    def __init__(self, mode: _Optional[int] = ..., size: _Optional[int] = ..., name: _Optional[str] = ...) -> None: ...

class PayloadsAddMetadataRequest(_message.Message):
    __slots__ = ("header", "payload_id", "metadata")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    HEADER_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_ID_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.RequestHeader
    payload_id: _common_pb2.Identifier
    metadata: _containers.ScalarMap[str, str]
    def __init__(self, header: _Optional[_Union[_common_pb2.RequestHeader, _Mapping]] = ..., payload_id: _Optional[_Union[_common_pb2.Identifier, _Mapping]] = ..., metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class PayloadsAddMetadataResponse(_message.Message):
    __slots__ = ("header", "payload_id", "metadata")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    HEADER_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_ID_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.ResponseHeader
    payload_id: _common_pb2.Identifier
    metadata: _containers.ScalarMap[str, str]
    def __init__(self, header: _Optional[_Union[_common_pb2.ResponseHeader, _Mapping]] = ..., payload_id: _Optional[_Union[_common_pb2.Identifier, _Mapping]] = ..., metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class PayloadsCreateRequest(_message.Message):
    __slots__ = ("header", "metadata")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    HEADER_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.RequestHeader
    metadata: _containers.ScalarMap[str, str]
    def __init__(self, header: _Optional[_Union[_common_pb2.RequestHeader, _Mapping]] = ..., metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class PayloadsCreateResponse(_message.Message):
    __slots__ = ("header", "payload_id", "type")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.ResponseHeader
    payload_id: _common_pb2.Identifier
    type: PayloadType
    def __init__(self, header: _Optional[_Union[_common_pb2.ResponseHeader, _Mapping]] = ..., payload_id: _Optional[_Union[_common_pb2.Identifier, _Mapping]] = ..., type: _Optional[_Union[PayloadType, str]] = ...) -> None: ...

class PayloadsDeleteRequest(_message.Message):
    __slots__ = ("header", "payload_id")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_ID_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.RequestHeader
    payload_id: _common_pb2.Identifier
    def __init__(self, header: _Optional[_Union[_common_pb2.RequestHeader, _Mapping]] = ..., payload_id: _Optional[_Union[_common_pb2.Identifier, _Mapping]] = ...) -> None: ...

class PayloadsDeleteResponse(_message.Message):
    __slots__ = ("header",)
    HEADER_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.ResponseHeader
    def __init__(self, header: _Optional[_Union[_common_pb2.ResponseHeader, _Mapping]] = ...) -> None: ...

class PayloadsDetailsRequest(_message.Message):
    __slots__ = ("header", "payload_id")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_ID_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.RequestHeader
    payload_id: _common_pb2.Identifier
    def __init__(self, header: _Optional[_Union[_common_pb2.RequestHeader, _Mapping]] = ..., payload_id: _Optional[_Union[_common_pb2.Identifier, _Mapping]] = ...) -> None: ...

class PayloadsDetailsResponse(_message.Message):
    __slots__ = ("header", "payload_id", "file", "type", "job_id", "metadata")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    HEADER_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_ID_FIELD_NUMBER: _ClassVar[int]
    FILE_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.ResponseHeader
    payload_id: _common_pb2.Identifier
    file: PayloadFileDetails
    type: PayloadType
    job_id: _common_pb2.Identifier
    metadata: _containers.ScalarMap[str, str]
    def __init__(self, header: _Optional[_Union[_common_pb2.ResponseHeader, _Mapping]] = ..., payload_id: _Optional[_Union[_common_pb2.Identifier, _Mapping]] = ..., file: _Optional[_Union[PayloadFileDetails, _Mapping]] = ..., type: _Optional[_Union[PayloadType, str]] = ..., job_id: _Optional[_Union[_common_pb2.Identifier, _Mapping]] = ..., metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class PayloadsDownloadRequest(_message.Message):
    __slots__ = ("header", "payload_id", "name")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.RequestHeader
    payload_id: _common_pb2.Identifier
    name: str
    def __init__(self, header: _Optional[_Union[_common_pb2.RequestHeader, _Mapping]] = ..., payload_id: _Optional[_Union[_common_pb2.Identifier, _Mapping]] = ..., name: _Optional[str] = ...) -> None: ...

class PayloadsDownloadResponse(_message.Message):
    __slots__ = ("header", "details", "data")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    DETAILS_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.ResponseHeader
    details: PayloadFileDetails
    data: bytes
    def __init__(self, header: _Optional[_Union[_common_pb2.ResponseHeader, _Mapping]] = ..., details: _Optional[_Union[PayloadFileDetails, _Mapping]] = ..., data: _Optional[bytes] = ...) -> None: ...

class PayloadsRemoveRequest(_message.Message):
    __slots__ = ("header", "payload_id", "name")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.RequestHeader
    payload_id: _common_pb2.Identifier
    name: str
    def __init__(self, header: _Optional[_Union[_common_pb2.RequestHeader, _Mapping]] = ..., payload_id: _Optional[_Union[_common_pb2.Identifier, _Mapping]] = ..., name: _Optional[str] = ...) -> None: ...

class PayloadsRemoveResponse(_message.Message):
    __slots__ = ("header",)
    HEADER_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.ResponseHeader
    def __init__(self, header: _Optional[_Union[_common_pb2.ResponseHeader, _Mapping]] = ...) -> None: ...

class PayloadsRemoveMetadataRequest(_message.Message):
    __slots__ = ("header", "payload_id", "keys")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_ID_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.RequestHeader
    payload_id: _common_pb2.Identifier
    keys: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, header: _Optional[_Union[_common_pb2.RequestHeader, _Mapping]] = ..., payload_id: _Optional[_Union[_common_pb2.Identifier, _Mapping]] = ..., keys: _Optional[_Iterable[str]] = ...) -> None: ...

class PayloadsRemoveMetadataResponse(_message.Message):
    __slots__ = ("header", "payload_id", "metadata")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    HEADER_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_ID_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.ResponseHeader
    payload_id: _common_pb2.Identifier
    metadata: _containers.ScalarMap[str, str]
    def __init__(self, header: _Optional[_Union[_common_pb2.ResponseHeader, _Mapping]] = ..., payload_id: _Optional[_Union[_common_pb2.Identifier, _Mapping]] = ..., metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class PayloadsUploadRequest(_message.Message):
    __slots__ = ("header", "payload_id", "details", "data")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_ID_FIELD_NUMBER: _ClassVar[int]
    DETAILS_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.RequestHeader
    payload_id: _common_pb2.Identifier
    details: PayloadFileDetails
    data: bytes
    def __init__(self, header: _Optional[_Union[_common_pb2.RequestHeader, _Mapping]] = ..., payload_id: _Optional[_Union[_common_pb2.Identifier, _Mapping]] = ..., details: _Optional[_Union[PayloadFileDetails, _Mapping]] = ..., data: _Optional[bytes] = ...) -> None: ...

class PayloadsUploadResponse(_message.Message):
    __slots__ = ("header", "details")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    DETAILS_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.ResponseHeader
    details: PayloadFileDetails
    def __init__(self, header: _Optional[_Union[_common_pb2.ResponseHeader, _Mapping]] = ..., details: _Optional[_Union[PayloadFileDetails, _Mapping]] = ...) -> None: ...
