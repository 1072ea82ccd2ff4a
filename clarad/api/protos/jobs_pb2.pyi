from clarad.api.protos import common_pb2 as _common_pb2
from clarad.api.protos import clara_pb2 as _clara_pb2
from clarad.api.protos import common_pb2 as _common_pb2_1
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
from clarad.api.protos.clara_pb2 import ClaraStopRequest as ClaraStopRequest
from clarad.api.protos.clara_pb2 import ClaraStopResponse as ClaraStopResponse
from clarad.api.protos.clara_pb2 import ClaraUtilizationRequest as ClaraUtilizationRequest
from clarad.api.protos.clara_pb2 import ClaraUtilizationResponse as ClaraUtilizationResponse
from clarad.api.protos.clara_pb2 import ClaraVersionRequest as ClaraVersionRequest
from clarad.api.protos.clara_pb2 import ClaraVersionResponse as ClaraVersionResponse

DESCRIPTOR: _descriptor.FileDescriptor

class JobOperatorStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOB_OPERATOR_STATUS_UNKNOWN: _ClassVar[JobOperatorStatus]
    JOB_OPERATOR_STATUS_PENDING: _ClassVar[JobOperatorStatus]
    JOB_OPERATOR_STATUS_RUNNING: _ClassVar[JobOperatorStatus]
    JOB_OPERATOR_STATUS_COMPLETED: _ClassVar[JobOperatorStatus]
    JOB_OPERATOR_STATUS_FAULTED: _ClassVar[JobOperatorStatus]

class JobPriority(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOB_PRIORITY_UNKNOWN: _ClassVar[JobPriority]
    JOB_PRIORITY_LOWER: _ClassVar[JobPriority]
    JOB_PRIORITY_NORMAL: _ClassVar[JobPriority]
    JOB_PRIORITY_HIGHER: _ClassVar[JobPriority]
    JOB_PRIORITY_IMMEDIATE: _ClassVar[JobPriority]

class JobState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOB_STATE_UNKNOWN: _ClassVar[JobState]
    JOB_STATE_PENDING: _ClassVar[JobState]
    JOB_STATE_RUNNING: _ClassVar[JobState]
    JOB_STATE_STOPPED: _ClassVar[JobState]

class JobStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOB_STATUS_UNKNOWN: _ClassVar[JobStatus]
    JOB_STATUS_HEALTHY: _ClassVar[JobStatus]
    JOB_STATUS_FAULTED: _ClassVar[JobStatus]
    JOB_STATUS_CANCELED: _ClassVar[JobStatus]
    JOB_STATUS_EVICTED: _ClassVar[JobStatus]
    JOB_STATUS_TERMINATED: _ClassVar[JobStatus]
JOB_OPERATOR_STATUS_UNKNOWN: JobOperatorStatus
JOB_OPERATOR_STATUS_PENDING: JobOperatorStatus
JOB_OPERATOR_STATUS_RUNNING: JobOperatorStatus
JOB_OPERATOR_STATUS_COMPLETED: JobOperatorStatus
JOB_OPERATOR_STATUS_FAULTED: JobOperatorStatus
JOB_PRIORITY_UNKNOWN: JobPriority
JOB_PRIORITY_LOWER: JobPriority
JOB_PRIORITY_NORMAL: JobPriority
JOB_PRIORITY_HIGHER: JobPriority
JOB_PRIORITY_IMMEDIATE: JobPriority
JOB_STATE_UNKNOWN: JobState
JOB_STATE_PENDING: JobState
JOB_STATE_RUNNING: JobState
JOB_STATE_STOPPED: JobState
JOB_STATUS_UNKNOWN: JobStatus
JOB_STATUS_HEALTHY: JobStatus
JOB_STATUS_FAULTED: JobStatus
JOB_STATUS_CANCELED: JobStatus
JOB_STATUS_EVICTED: JobStatus
JOB_STATUS_TERMINATED: JobStatus

class JobsAddMetadataRequest(_message.Message):
    __slots__ = ("header", "job_id", "metadata")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    HEADER_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2_1.RequestHeader
    job_id: _common_pb2_1.Identifier
    metadata: _containers.ScalarMap[str, str]
    def __init__(self, header: _Optional[_Union[_common_pb2_1.RequestHeader, _Mapping]] = ..., job_id: _Optional[_Union[_common_pb2_1.Identifier, _Mapping]] = ..., metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class JobsAddMetadataResponse(_message.Message):
    __slots__ = ("header", "job_id", "metadata")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    HEADER_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2_1.ResponseHeader
    job_id: _common_pb2_1.Identifier
    metadata: _containers.ScalarMap[str, str]
    def __init__(self, header: _Optional[_Union[_common_pb2_1.ResponseHeader, _Mapping]] = ..., job_id: _Optional[_Union[_common_pb2_1.Identifier, _Mapping]] = ..., metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class JobsCancelRequest(_message.Message):
    __slots__ = ("header", "job_id", "reason")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2_1.RequestHeader
    job_id: _common_pb2_1.Identifier
    reason: str
    def __init__(self, header: _Optional[_Union[_common_pb2_1.RequestHeader, _Mapping]] = ..., job_id: _Optional[_Union[_common_pb2_1.Identifier, _Mapping]] = ..., reason: _Optional[str] = ...) -> None: ...

class JobsCancelResponse(_message.Message):
    __slots__ = ("header", "job_id", "job_state", "job_status")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_STATE_FIELD_NUMBER: _ClassVar[int]
    JOB_STATUS_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2_1.ResponseHeader
    job_id: _common_pb2_1.Identifier
    job_state: JobState
    job_status: JobStatus
    def __init__(self, header: _Optional[_Union[_common_pb2_1.ResponseHeader, _Mapping]] = ..., job_id: _Optional[_Union[_common_pb2_1.Identifier, _Mapping]] = ..., job_state: _Optional[_Union[JobState, str]] = ..., job_status: _Optional[_Union[JobStatus, str]] = ...) -> None: ...

class JobsCreateRequest(_message.Message):
    __slots__ = ("header", "pipeline_id", "name", "priority", "input_payloads", "metadata")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    HEADER_FIELD_NUMBER: _ClassVar[int]
    PIPELINE_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    INPUT_PAYLOADS_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2_1.RequestHeader
    pipeline_id: _common_pb2_1.Identifier
    name: str
    priority: JobPriority
    input_payloads: _containers.RepeatedCompositeFieldContainer[_common_pb2_1.Identifier]
    metadata: _containers.ScalarMap[str, str]
    def __init__(self, header: _Optional[_Union[_common_pb2_1.RequestHeader, _Mapping]] = ..., pipeline_id: _Optional[_Union[_common_pb2_1.Identifier, _Mapping]] = ..., name: _Optional[str] = ..., priority: _Optional[_Union[JobPriority, str]] = ..., input_payloads: _Optional[_Iterable[_Union[_common_pb2_1.Identifier, _Mapping]]] = ..., metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class JobsCreateResponse(_message.Message):
    __slots__ = ("header", "job_id", "payload_id")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_ID_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2_1.ResponseHeader
    job_id: _common_pb2_1.Identifier
    payload_id: _common_pb2_1.Identifier
    def __init__(self, header: _Optional[_Union[_common_pb2_1.ResponseHeader, _Mapping]] = ..., job_id: _Optional[_Union[_common_pb2_1.Identifier, _Mapping]] = ..., payload_id: _Optional[_Union[_common_pb2_1.Identifier, _Mapping]] = ...) -> None: ...

class JobsListRequest(_message.Message):
    __slots__ = ("header", "filter")
    class JobFilter(_message.Message):
        __slots__ = ("completed_before", "created_after", "has_state", "has_status", "pipeline_id")
        COMPLETED_BEFORE_FIELD_NUMBER: _ClassVar[int]
        CREATED_AFTER_FIELD_NUMBER: _ClassVar[int]
        HAS_STATE_FIELD_NUMBER: _ClassVar[int]
        HAS_STATUS_FIELD_NUMBER: _ClassVar[int]
        PIPELINE_ID_FIELD_NUMBER: _ClassVar[int]
        completed_before: _common_pb2_1.Timestamp
        created_after: _common_pb2_1.Timestamp
        has_state: _containers.RepeatedScalarFieldContainer[JobState]
        has_status: _containers.RepeatedScalarFieldContainer[JobStatus]
        pipeline_id: _containers.RepeatedCompositeFieldContainer[_common_pb2_1.Identifier]
        def __init__(self, completed_before: _Optional[_Union[_common_pb2_1.Timestamp, _Mapping]] = ..., created_after: _Optional[_Union[_common_pb2_1.Timestamp, _Mapping]] = ..., has_state: _Optional[_Iterable[_Union[JobState, str]]] = ..., has_status: _Optional[_Iterable[_Union[JobStatus, str]]] = ..., pipeline_id: _Optional[_Iterable[_Union[_common_pb2_1.Identifier, _Mapping]]] = ...) -> None: ...
    HEADER_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2_1.RequestHeader
    filter: JobsListRequest.JobFilter
    def __init__(self, header: _Optional[_Union[_common_pb2_1.RequestHeader, _Mapping]] = ..., filter: _Optional[_Union[JobsListRequest.JobFilter, _Mapping]] = ...) -> None: ...

class JobsListResponse(_message.Message):
    __slots__ = ("header", "job_details")
    class JobDetails(_message.Message):
        __slots__ = ("job_id", "payload_id", "pipeline_id", "job_name", "state", "status", "priority", "created", "started", "stopped", "metadata", "timestamp_created", "timestamp_started", "timestamp_stopped")
        class MetadataEntry(_message.Message):
            __slots__ = ("key", "value")
            KEY_FIELD_NUMBER: _ClassVar[int]
            VALUE_FIELD_NUMBER: _ClassVar[int]
            key: str
            value: str
            def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
        JOB_ID_FIELD_NUMBER: _ClassVar[int]
        PAYLOAD_ID_FIELD_NUMBER: _ClassVar[int]
        PIPELINE_ID_FIELD_NUMBER: _ClassVar[int]
        JOB_NAME_FIELD_NUMBER: _ClassVar[int]
        STATE_FIELD_NUMBER: _ClassVar[int]
        STATUS_FIELD_NUMBER: _ClassVar[int]
        PRIORITY_FIELD_NUMBER: _ClassVar[int]
        CREATED_FIELD_NUMBER: _ClassVar[int]
        STARTED_FIELD_NUMBER: _ClassVar[int]
        STOPPED_FIELD_NUMBER: _ClassVar[int]
        METADATA_FIELD_NUMBER: _ClassVar[int]
        TIMESTAMP_CREATED_FIELD_NUMBER: _ClassVar[int]
        TIMESTAMP_STARTED_FIELD_NUMBER: _ClassVar[int]
        TIMESTAMP_STOPPED_FIELD_NUMBER: _ClassVar[int]
        job_id: _common_pb2_1.Identifier
        payload_id: _common_pb2_1.Identifier
        pipeline_id: _common_pb2_1.Identifier
        job_name: str
        state: JobState
        status: JobStatus
        priority: JobPriority
        created: _common_pb2_1.Timestamp
        started: _common_pb2_1.Timestamp
        stopped: _common_pb2_1.Timestamp
        metadata: _containers.ScalarMap[str, str]
        timestamp_created: str
        timestamp_started: str
        timestamp_stopped: str
        def __init__(self, job_id: _Optional[_Union[_common_pb2_1.Identifier, _Mapping]] = ..., payload_id: _Optional[_Union[_common_pb2_1.Identifier, _Mapping]] = ..., pipeline_id: _Optional[_Union[_common_pb2_1.Identifier, _Mapping]] = ..., job_name: _Optional[str] = ..., state: _Optional[_Union[JobState, str]] = ..., status: _Optional[_Union[JobStatus, str]] = ..., priority: _Optional[_Union[JobPriority, str]] = ..., created: _Optional[_Union[_common_pb2_1.Timestamp, _Mapping]] = ..., started: _Optional[_Union[_common_pb2_1.Timestamp, _Mapping]] = ..., stopped: _Optional[_Union[_common_pb2_1.Timestamp, _Mapping]] = ..., metadata: _Optional[_Mapping[str, str]] = ..., timestamp_created: _Optional[str] = ..., timestamp_started: _Optional[str] = ..., timestamp_stopped: _Optional[str] = ...) -> None: ...
    HEADER_FIELD_NUMBER: _ClassVar[int]
    JOB_DETAILS_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2_1.ResponseHeader
    job_details: JobsListResponse.JobDetails
    def __init__(self, header: _Optional[_Union[_common_pb2_1.ResponseHeader, _Mapping]] = ..., job_details: _Optional[_Union[JobsListResponse.JobDetails, _Mapping]] = ...) -> None: ...

class JobsReadLogsRequest(_message.Message):
    __slots__ = ("header", "job_id", "operator_name")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    OPERATOR_NAME_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2_1.RequestHeader
    job_id: _common_pb2_1.Identifier
    operator_name: str
    def __init__(self, header: _Optional[_Union[_common_pb2_1.RequestHeader, _Mapping]] = ..., job_id: _Optional[_Union[_common_pb2_1.Identifier, _Mapping]] = ..., operator_name: _Optional[str] = ...) -> None: ...

class JobsReadLogsResponse(_message.Message):
    __slots__ = ("header", "job_id", "operator_name", "logs")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    OPERATOR_NAME_FIELD_NUMBER: _ClassVar[int]
    LOGS_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2_1.ResponseHeader
    job_id: _common_pb2_1.Identifier
    operator_name: str
    logs: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, header: _Optional[_Union[_common_pb2_1.ResponseHeader, _Mapping]] = ..., job_id: _Optional[_Union[_common_pb2_1.Identifier, _Mapping]] = ..., operator_name: _Optional[str] = ..., logs: _Optional[_Iterable[str]] = ...) -> None: ...

class JobsRemoveMetadataRequest(_message.Message):
    __slots__ = ("header", "job_id", "keys")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2_1.RequestHeader
    job_id: _common_pb2_1.Identifier
    keys: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, header: _Optional[_Union[_common_pb2_1.RequestHeader, _Mapping]] = ..., job_id: _Optional[_Union[_common_pb2_1.Identifier, _Mapping]] = ..., keys: _Optional[_Iterable[str]] = ...) -> None: ...

class JobsRemoveMetadataResponse(_message.Message):
    __slots__ = ("header", "job_id", "metadata")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    HEADER_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2_1.ResponseHeader
    job_id: _common_pb2_1.Identifier
    metadata: _containers.ScalarMap[str, str]
    def __init__(self, header: _Optional[_Union[_common_pb2_1.ResponseHeader, _Mapping]] = ..., job_id: _Optional[_Union[_common_pb2_1.Identifier, _Mapping]] = ..., metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class JobsStartRequest(_message.Message):
    __slots__ = ("header", "job_id", "Variables")
    class NamedValue(_message.Message):
        __slots__ = ("name", "value")
        NAME_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        name: str
        value: str
        def __init__(self, name: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    HEADER_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    VARIABLES_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2_1.RequestHeader
    job_id: _common_pb2_1.Identifier
    Variables: _containers.RepeatedCompositeFieldContainer[JobsStartRequest.NamedValue]
    def __init__(self, header: _Optional[_Union[_common_pb2_1.RequestHeader, _Mapping]] = ..., job_id: _Optional[_Union[_common_pb2_1.Identifier, _Mapping]] = ..., Variables: _Optional[_Iterable[_Union[JobsStartRequest.NamedValue, _Mapping]]] = ...) -> None: ...

class JobsStartResponse(_message.Message):
    __slots__ = ("header", "priority", "state", "status")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2_1.ResponseHeader
    priority: JobPriority
    state: JobState
    status: JobStatus
    def __init__(self, header: _Optional[_Union[_common_pb2_1.ResponseHeader, _Mapping]] = ..., priority: _Optional[_Union[JobPriority, str]] = ..., state: _Optional[_Union[JobState, str]] = ..., status: _Optional[_Union[JobStatus, str]] = ...) -> None: ...

class JobsStatusRequest(_message.Message):
    __slots__ = ("header", "job_id")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2_1.RequestHeader
    job_id: _common_pb2_1.Identifier
    def __init__(self, header: _Optional[_Union[_common_pb2_1.RequestHeader, _Mapping]] = ..., job_id: _Optional[_Union[_common_pb2_1.Identifier, _Mapping]] = ...) -> None: ...

class JobsStatusResponse(_message.Message):
    __slots__ = ("header", "job_id", "pipeline_id", "payload_id", "state", "status", "name", "priority", "created", "started", "stopped", "operator_details", "metadata", "dag", "messages", "timestamp_created", "timestamp_started", "timestamp_stopped")
    class JobOperatorDetails(_message.Message):
        __slots__ = ("name", "status", "created", "started", "stopped")
        NAME_FIELD_NUMBER: _ClassVar[int]
        STATUS_FIELD_NUMBER: _ClassVar[int]
        CREATED_FIELD_NUMBER: _ClassVar[int]
        STARTED_FIELD_NUMBER: _ClassVar[int]
        STOPPED_FIELD_NUMBER: _ClassVar[int]
        name: str
        status: JobOperatorStatus
        created: _common_pb2_1.Timestamp
        started: _common_pb2_1.Timestamp
        stopped: _common_pb2_1.Timestamp
        def __init__(self, name: _Optional[str] = ..., status: _Optional[_Union[JobOperatorStatus, str]] = ..., created: _Optional[_Union[_common_pb2_1.Timestamp, _Mapping]] = ..., started: _Optional[_Union[_common_pb2_1.Timestamp, _Mapping]] = ..., stopped: _Optional[_Union[_common_pb2_1.Timestamp, _Mapping]] = ...) -> None: ...
    class JobDagNode(_message.Message):
        __slots__ = ("name", "input_dependencies", "order_dependencies")
        NAME_FIELD_NUMBER: _ClassVar[int]
        INPUT_DEPENDENCIES_FIELD_NUMBER: _ClassVar[int]
        ORDER_DEPENDENCIES_FIELD_NUMBER: _ClassVar[int]
        name: str
        input_dependencies: _containers.RepeatedCompositeFieldContainer[JobsStatusResponse.JobDagNode]
        order_dependencies: _containers.RepeatedCompositeFieldContainer[JobsStatusResponse.JobDagNode]
        def __init__(self, name: _Optional[str] = ..., input_dependencies: _Optional[_Iterable[_Union[JobsStatusResponse.JobDagNode, _Mapping]]] = ..., order_dependencies: _Optional[_Iterable[_Union[JobsStatusResponse.JobDagNode, _Mapping]]] = ...) -> None: ...
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    HEADER_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    PIPELINE_ID_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    STARTED_FIELD_NUMBER: _ClassVar[int]
    STOPPED_FIELD_NUMBER: _ClassVar[int]
    OPERATOR_DETAILS_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    DAG_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_CREATED_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_STARTED_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_STOPPED_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2_1.ResponseHeader
    job_id: _common_pb2_1.Identifier
    pipeline_id: _common_pb2_1.Identifier
    payload_id: _common_pb2_1.Identifier
    state: JobState
    status: JobStatus
    name: str
    priority: JobPriority
    created: _common_pb2_1.Timestamp
    started: _common_pb2_1.Timestamp
    stopped: _common_pb2_1.Timestamp
    operator_details: _containers.RepeatedCompositeFieldContainer[JobsStatusResponse.JobOperatorDetails]
    metadata: _containers.ScalarMap[str, str]
    dag: _containers.RepeatedCompositeFieldContainer[JobsStatusResponse.JobDagNode]
    messages: _containers.RepeatedScalarFieldContainer[str]
    timestamp_created: str
    timestamp_started: str
    timestamp_stopped: str
    def __init__(self, header: _Optional[_Union[_common_pb2_1.ResponseHeader, _Mapping]] = ..., job_id: _Optional[_Union[_common_pb2_1.Identifier, _Mapping]] = ..., pipeline_id: _Optional[_Union[_common_pb2_1.Identifier, _Mapping]] = ..., payload_id: _Optional[_Union[_common_pb2_1.Identifier, _Mapping]] = ..., state: _Optional[_Union[JobState, str]] = ..., status: _Optional[_Union[JobStatus, str]] = ..., name: _Optional[str] = ..., priority: _Optional[_Union[JobPriority, str]] = ..., created: _Optional[_Union[_common_pb2_1.Timestamp, _Mapping]] = ..., started: _Optional[_Union[_common_pb2_1.Timestamp, _Mapping]] = ..., stopped: _Optional[_Union[_common_pb2_1.Timestamp, _Mapping]] = ..., operator_details: _Optional[_Iterable[_Union[JobsStatusResponse.JobOperatorDetails, _Mapping]]] = ..., metadata: _Optional[_Mapping[str, str]] = ..., dag: _Optional[_Iterable[_Union[JobsStatusResponse.JobDagNode, _Mapping]]] = ..., messages: _Optional[_Iterable[str]] = ..., timestamp_created: _Optional[str] = ..., timestamp_started: _Optional[str] = ..., timestamp_stopped: _Optional[str] = ...) -> None: ...
