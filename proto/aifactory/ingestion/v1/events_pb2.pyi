import datetime

from aifactory.common.v1 import common_pb2 as _common_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RecordAccepted(_message.Message):
    __slots__ = ("record", "dataset", "ingested_at", "schema_version")
    RECORD_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    INGESTED_AT_FIELD_NUMBER: _ClassVar[int]
    SCHEMA_VERSION_FIELD_NUMBER: _ClassVar[int]
    record: _common_pb2.Record
    dataset: _common_pb2.DatasetRef
    ingested_at: _timestamp_pb2.Timestamp
    schema_version: str
    def __init__(self, record: _Optional[_Union[_common_pb2.Record, _Mapping]] = ..., dataset: _Optional[_Union[_common_pb2.DatasetRef, _Mapping]] = ..., ingested_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., schema_version: _Optional[str] = ...) -> None: ...

class RecordAcceptedBatch(_message.Message):
    __slots__ = ("records",)
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    records: _containers.RepeatedCompositeFieldContainer[RecordAccepted]
    def __init__(self, records: _Optional[_Iterable[_Union[RecordAccepted, _Mapping]]] = ...) -> None: ...

class Violation(_message.Message):
    __slots__ = ("field", "code", "message")
    FIELD_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    field: str
    code: str
    message: str
    def __init__(self, field: _Optional[str] = ..., code: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class RecordRejected(_message.Message):
    __slots__ = ("use_case", "original", "content_type", "source_topic", "source_partition", "source_offset", "violations", "rejected_at", "record_id", "schema_version", "original_truncated", "original_size")
    USE_CASE_FIELD_NUMBER: _ClassVar[int]
    ORIGINAL_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_TOPIC_FIELD_NUMBER: _ClassVar[int]
    SOURCE_PARTITION_FIELD_NUMBER: _ClassVar[int]
    SOURCE_OFFSET_FIELD_NUMBER: _ClassVar[int]
    VIOLATIONS_FIELD_NUMBER: _ClassVar[int]
    REJECTED_AT_FIELD_NUMBER: _ClassVar[int]
    RECORD_ID_FIELD_NUMBER: _ClassVar[int]
    SCHEMA_VERSION_FIELD_NUMBER: _ClassVar[int]
    ORIGINAL_TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    ORIGINAL_SIZE_FIELD_NUMBER: _ClassVar[int]
    use_case: str
    original: bytes
    content_type: str
    source_topic: str
    source_partition: int
    source_offset: int
    violations: _containers.RepeatedCompositeFieldContainer[Violation]
    rejected_at: _timestamp_pb2.Timestamp
    record_id: str
    schema_version: str
    original_truncated: bool
    original_size: int
    def __init__(self, use_case: _Optional[str] = ..., original: _Optional[bytes] = ..., content_type: _Optional[str] = ..., source_topic: _Optional[str] = ..., source_partition: _Optional[int] = ..., source_offset: _Optional[int] = ..., violations: _Optional[_Iterable[_Union[Violation, _Mapping]]] = ..., rejected_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., record_id: _Optional[str] = ..., schema_version: _Optional[str] = ..., original_truncated: _Optional[bool] = ..., original_size: _Optional[int] = ...) -> None: ...

class FieldQuality(_message.Message):
    __slots__ = ("field", "null_count", "null_rate", "out_of_range_count", "out_of_range_rate")
    FIELD_FIELD_NUMBER: _ClassVar[int]
    NULL_COUNT_FIELD_NUMBER: _ClassVar[int]
    NULL_RATE_FIELD_NUMBER: _ClassVar[int]
    OUT_OF_RANGE_COUNT_FIELD_NUMBER: _ClassVar[int]
    OUT_OF_RANGE_RATE_FIELD_NUMBER: _ClassVar[int]
    field: str
    null_count: int
    null_rate: float
    out_of_range_count: int
    out_of_range_rate: float
    def __init__(self, field: _Optional[str] = ..., null_count: _Optional[int] = ..., null_rate: _Optional[float] = ..., out_of_range_count: _Optional[int] = ..., out_of_range_rate: _Optional[float] = ...) -> None: ...

class QualityReport(_message.Message):
    __slots__ = ("report_id", "use_case", "window", "record_count", "accepted_count", "rejected_count", "fields", "rejections_by_code")
    class RejectionsByCodeEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    REPORT_ID_FIELD_NUMBER: _ClassVar[int]
    USE_CASE_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    RECORD_COUNT_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_COUNT_FIELD_NUMBER: _ClassVar[int]
    REJECTED_COUNT_FIELD_NUMBER: _ClassVar[int]
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    REJECTIONS_BY_CODE_FIELD_NUMBER: _ClassVar[int]
    report_id: str
    use_case: str
    window: _common_pb2.TimeRange
    record_count: int
    accepted_count: int
    rejected_count: int
    fields: _containers.RepeatedCompositeFieldContainer[FieldQuality]
    rejections_by_code: _containers.ScalarMap[str, int]
    def __init__(self, report_id: _Optional[str] = ..., use_case: _Optional[str] = ..., window: _Optional[_Union[_common_pb2.TimeRange, _Mapping]] = ..., record_count: _Optional[int] = ..., accepted_count: _Optional[int] = ..., rejected_count: _Optional[int] = ..., fields: _Optional[_Iterable[_Union[FieldQuality, _Mapping]]] = ..., rejections_by_code: _Optional[_Mapping[str, int]] = ...) -> None: ...
