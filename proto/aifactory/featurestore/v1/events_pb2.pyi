import datetime

from aifactory.common.v1 import common_pb2 as _common_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class FeaturesWritten(_message.Message):
    __slots__ = ("use_case", "entity_ids", "features", "row_count", "event_time_range", "written_at", "record_ids")
    USE_CASE_FIELD_NUMBER: _ClassVar[int]
    ENTITY_IDS_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    ROW_COUNT_FIELD_NUMBER: _ClassVar[int]
    EVENT_TIME_RANGE_FIELD_NUMBER: _ClassVar[int]
    WRITTEN_AT_FIELD_NUMBER: _ClassVar[int]
    RECORD_IDS_FIELD_NUMBER: _ClassVar[int]
    use_case: str
    entity_ids: _containers.RepeatedScalarFieldContainer[str]
    features: _containers.RepeatedCompositeFieldContainer[_common_pb2.FeatureRef]
    row_count: int
    event_time_range: _common_pb2.TimeRange
    written_at: _timestamp_pb2.Timestamp
    record_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, use_case: _Optional[str] = ..., entity_ids: _Optional[_Iterable[str]] = ..., features: _Optional[_Iterable[_Union[_common_pb2.FeatureRef, _Mapping]]] = ..., row_count: _Optional[int] = ..., event_time_range: _Optional[_Union[_common_pb2.TimeRange, _Mapping]] = ..., written_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., record_ids: _Optional[_Iterable[str]] = ...) -> None: ...
