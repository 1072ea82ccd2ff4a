from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Identifier(_message.Message):
    __slots__ = ("value",)
    VALUE_FIELD_NUMBER: _ClassVar[int]
    value: str
    def __init__(self, value: _Optional[str] = ...) -> None: ...

class Version(_message.Message):
    __slots__ = ("major", "minor", "patch", "label")
    MAJOR_FIELD_NUMBER: _ClassVar[int]
    MINOR_FIELD_NUMBER: _ClassVar[int]
    PATCH_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    major: int
    minor: int
    patch: int
    label: str
    def __init__(self, major: _Optional[int] = ..., minor: _Optional[int] = ..., patch: _Optional[int] = ..., label: _Optional[str] = ...) -> None: ...

class RequestHeader(_message.Message):
    __slots__ = ("api_version", "user_agent")
    API_VERSION_FIELD_NUMBER: _ClassVar[int]
    USER_AGENT_FIELD_NUMBER: _ClassVar[int]
    api_version: Version
    user_agent: str
    def __init__(self, api_version: _Optional[_Union[Version, _Mapping]] = ..., user_agent: _Optional[str] = ...) -> None: ...

class ResponseHeader(_message.Message):
    __slots__ = ("code", "messages")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    code: int
    messages: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, code: _Optional[int] = ..., messages: _Optional[_Iterable[str]] = ...) -> None: ...

class Timestamp(_message.Message):
    __slots__ = ("value",)
    VALUE_FIELD_NUMBER: _ClassVar[int]
    value: int
    def __init__(self, value: _Optional[int] = ...) -> None: ...
