import datetime

from aifactory.common.v1 import common_pb2 as _common_pb2
from aifactory.ingestion.v1 import events_pb2 as _events_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class IngestItem(_message.Message):
    __slots__ = ("json", "record")
    JSON_FIELD_NUMBER: _ClassVar[int]
    RECORD_FIELD_NUMBER: _ClassVar[int]
    json: str
    record: _common_pb2.Record
    def __init__(self, json: _Optional[str] = ..., record: _Optional[_Union[_common_pb2.Record, _Mapping]] = ...) -> None: ...

class IngestResult(_message.Message):
    __slots__ = ("index", "accepted", "record_id", "violations")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    RECORD_ID_FIELD_NUMBER: _ClassVar[int]
    VIOLATIONS_FIELD_NUMBER: _ClassVar[int]
    index: int
    accepted: bool
    record_id: str
    violations: _containers.RepeatedCompositeFieldContainer[_events_pb2.Violation]
    def __init__(self, index: _Optional[int] = ..., accepted: _Optional[bool] = ..., record_id: _Optional[str] = ..., violations: _Optional[_Iterable[_Union[_events_pb2.Violation, _Mapping]]] = ...) -> None: ...

class IngestRequest(_message.Message):
    __slots__ = ("use_case", "items", "request_id")
    USE_CASE_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    use_case: str
    items: _containers.RepeatedCompositeFieldContainer[IngestItem]
    request_id: str
    def __init__(self, use_case: _Optional[str] = ..., items: _Optional[_Iterable[_Union[IngestItem, _Mapping]]] = ..., request_id: _Optional[str] = ...) -> None: ...

class IngestResponse(_message.Message):
    __slots__ = ("results", "accepted_count", "rejected_count", "dataset")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_COUNT_FIELD_NUMBER: _ClassVar[int]
    REJECTED_COUNT_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[IngestResult]
    accepted_count: int
    rejected_count: int
    dataset: _common_pb2.DatasetRef
    def __init__(self, results: _Optional[_Iterable[_Union[IngestResult, _Mapping]]] = ..., accepted_count: _Optional[int] = ..., rejected_count: _Optional[int] = ..., dataset: _Optional[_Union[_common_pb2.DatasetRef, _Mapping]] = ...) -> None: ...

class IngestStreamRequest(_message.Message):
    __slots__ = ("use_case", "items", "request_id")
    USE_CASE_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    use_case: str
    items: _containers.RepeatedCompositeFieldContainer[IngestItem]
    request_id: str
    def __init__(self, use_case: _Optional[str] = ..., items: _Optional[_Iterable[_Union[IngestItem, _Mapping]]] = ..., request_id: _Optional[str] = ...) -> None: ...

class IngestStreamResponse(_message.Message):
    __slots__ = ("received_count", "accepted_count", "rejected_count", "rejected", "dataset")
    RECEIVED_COUNT_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_COUNT_FIELD_NUMBER: _ClassVar[int]
    REJECTED_COUNT_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    received_count: int
    accepted_count: int
    rejected_count: int
    rejected: _containers.RepeatedCompositeFieldContainer[IngestResult]
    dataset: _common_pb2.DatasetRef
    def __init__(self, received_count: _Optional[int] = ..., accepted_count: _Optional[int] = ..., rejected_count: _Optional[int] = ..., rejected: _Optional[_Iterable[_Union[IngestResult, _Mapping]]] = ..., dataset: _Optional[_Union[_common_pb2.DatasetRef, _Mapping]] = ...) -> None: ...

class GetDatasetRequest(_message.Message):
    __slots__ = ("use_case", "version")
    USE_CASE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    use_case: str
    version: str
    def __init__(self, use_case: _Optional[str] = ..., version: _Optional[str] = ...) -> None: ...

class Dataset(_message.Message):
    __slots__ = ("ref", "record_count", "event_time_range", "created_at", "schema_version", "parent_version", "file_count")
    REF_FIELD_NUMBER: _ClassVar[int]
    RECORD_COUNT_FIELD_NUMBER: _ClassVar[int]
    EVENT_TIME_RANGE_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    SCHEMA_VERSION_FIELD_NUMBER: _ClassVar[int]
    PARENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    FILE_COUNT_FIELD_NUMBER: _ClassVar[int]
    ref: _common_pb2.DatasetRef
    record_count: int
    event_time_range: _common_pb2.TimeRange
    created_at: _timestamp_pb2.Timestamp
    schema_version: str
    parent_version: str
    file_count: int
    def __init__(self, ref: _Optional[_Union[_common_pb2.DatasetRef, _Mapping]] = ..., record_count: _Optional[int] = ..., event_time_range: _Optional[_Union[_common_pb2.TimeRange, _Mapping]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., schema_version: _Optional[str] = ..., parent_version: _Optional[str] = ..., file_count: _Optional[int] = ...) -> None: ...

class GetDatasetResponse(_message.Message):
    __slots__ = ("dataset",)
    DATASET_FIELD_NUMBER: _ClassVar[int]
    dataset: Dataset
    def __init__(self, dataset: _Optional[_Union[Dataset, _Mapping]] = ...) -> None: ...
