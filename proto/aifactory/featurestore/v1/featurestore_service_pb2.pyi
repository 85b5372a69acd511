import datetime

from aifactory.common.v1 import common_pb2 as _common_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GetOnlineFeaturesRequest(_message.Message):
    __slots__ = ("use_case", "entity_ids", "feature_names")
    USE_CASE_FIELD_NUMBER: _ClassVar[int]
    ENTITY_IDS_FIELD_NUMBER: _ClassVar[int]
    FEATURE_NAMES_FIELD_NUMBER: _ClassVar[int]
    use_case: str
    entity_ids: _containers.RepeatedScalarFieldContainer[str]
    feature_names: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, use_case: _Optional[str] = ..., entity_ids: _Optional[_Iterable[str]] = ..., feature_names: _Optional[_Iterable[str]] = ...) -> None: ...

class FeatureRow(_message.Message):
    __slots__ = ("entity_id", "values", "found", "event_time", "feature_versions", "record_id")
    class ValuesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _common_pb2.Value
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_common_pb2.Value, _Mapping]] = ...) -> None: ...
    class FeatureVersionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ENTITY_ID_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    FOUND_FIELD_NUMBER: _ClassVar[int]
    EVENT_TIME_FIELD_NUMBER: _ClassVar[int]
    FEATURE_VERSIONS_FIELD_NUMBER: _ClassVar[int]
    RECORD_ID_FIELD_NUMBER: _ClassVar[int]
    entity_id: str
    values: _containers.MessageMap[str, _common_pb2.Value]
    found: bool
    event_time: _timestamp_pb2.Timestamp
    feature_versions: _containers.ScalarMap[str, str]
    record_id: str
    def __init__(self, entity_id: _Optional[str] = ..., values: _Optional[_Mapping[str, _common_pb2.Value]] = ..., found: _Optional[bool] = ..., event_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., feature_versions: _Optional[_Mapping[str, str]] = ..., record_id: _Optional[str] = ...) -> None: ...

class GetOnlineFeaturesResponse(_message.Message):
    __slots__ = ("rows", "features")
    ROWS_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    rows: _containers.RepeatedCompositeFieldContainer[FeatureRow]
    features: _containers.RepeatedCompositeFieldContainer[_common_pb2.FeatureRef]
    def __init__(self, rows: _Optional[_Iterable[_Union[FeatureRow, _Mapping]]] = ..., features: _Optional[_Iterable[_Union[_common_pb2.FeatureRef, _Mapping]]] = ...) -> None: ...

class GetTrainingSetRequest(_message.Message):
    __slots__ = ("use_case", "time_range", "feature_names")
    USE_CASE_FIELD_NUMBER: _ClassVar[int]
    TIME_RANGE_FIELD_NUMBER: _ClassVar[int]
    FEATURE_NAMES_FIELD_NUMBER: _ClassVar[int]
    use_case: str
    time_range: _common_pb2.TimeRange
    feature_names: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, use_case: _Optional[str] = ..., time_range: _Optional[_Union[_common_pb2.TimeRange, _Mapping]] = ..., feature_names: _Optional[_Iterable[str]] = ...) -> None: ...

class GetTrainingSetResponse(_message.Message):
    __slots__ = ("uri", "format", "row_count", "datasets", "features", "content_hash", "label", "quarantined")
    class QuarantinedEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    URI_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    ROW_COUNT_FIELD_NUMBER: _ClassVar[int]
    DATASETS_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    CONTENT_HASH_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    QUARANTINED_FIELD_NUMBER: _ClassVar[int]
    uri: str
    format: str
    row_count: int
    datasets: _containers.RepeatedCompositeFieldContainer[_common_pb2.DatasetRef]
    features: _containers.RepeatedCompositeFieldContainer[_common_pb2.FeatureRef]
    content_hash: str
    label: str
    quarantined: _containers.ScalarMap[str, int]
    def __init__(self, uri: _Optional[str] = ..., format: _Optional[str] = ..., row_count: _Optional[int] = ..., datasets: _Optional[_Iterable[_Union[_common_pb2.DatasetRef, _Mapping]]] = ..., features: _Optional[_Iterable[_Union[_common_pb2.FeatureRef, _Mapping]]] = ..., content_hash: _Optional[str] = ..., label: _Optional[str] = ..., quarantined: _Optional[_Mapping[str, int]] = ...) -> None: ...

class StreamTrainingSetRequest(_message.Message):
    __slots__ = ("use_case", "time_range", "feature_names")
    USE_CASE_FIELD_NUMBER: _ClassVar[int]
    TIME_RANGE_FIELD_NUMBER: _ClassVar[int]
    FEATURE_NAMES_FIELD_NUMBER: _ClassVar[int]
    use_case: str
    time_range: _common_pb2.TimeRange
    feature_names: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, use_case: _Optional[str] = ..., time_range: _Optional[_Union[_common_pb2.TimeRange, _Mapping]] = ..., feature_names: _Optional[_Iterable[str]] = ...) -> None: ...

class StreamTrainingSetResponse(_message.Message):
    __slots__ = ("header", "batch")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    header: TrainingSetHeader
    batch: TrainingSetBatch
    def __init__(self, header: _Optional[_Union[TrainingSetHeader, _Mapping]] = ..., batch: _Optional[_Union[TrainingSetBatch, _Mapping]] = ...) -> None: ...

class TrainingSetHeader(_message.Message):
    __slots__ = ("row_count", "datasets", "features", "content_hash", "label", "quarantined", "arrow_schema", "ref")
    class QuarantinedEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    ROW_COUNT_FIELD_NUMBER: _ClassVar[int]
    DATASETS_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    CONTENT_HASH_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    QUARANTINED_FIELD_NUMBER: _ClassVar[int]
    ARROW_SCHEMA_FIELD_NUMBER: _ClassVar[int]
    REF_FIELD_NUMBER: _ClassVar[int]
    row_count: int
    datasets: _containers.RepeatedCompositeFieldContainer[_common_pb2.DatasetRef]
    features: _containers.RepeatedCompositeFieldContainer[_common_pb2.FeatureRef]
    content_hash: str
    label: str
    quarantined: _containers.ScalarMap[str, int]
    arrow_schema: bytes
    ref: _common_pb2.DatasetRef
    def __init__(self, row_count: _Optional[int] = ..., datasets: _Optional[_Iterable[_Union[_common_pb2.DatasetRef, _Mapping]]] = ..., features: _Optional[_Iterable[_Union[_common_pb2.FeatureRef, _Mapping]]] = ..., content_hash: _Optional[str] = ..., label: _Optional[str] = ..., quarantined: _Optional[_Mapping[str, int]] = ..., arrow_schema: _Optional[bytes] = ..., ref: _Optional[_Union[_common_pb2.DatasetRef, _Mapping]] = ...) -> None: ...

class TrainingSetBatch(_message.Message):
    __slots__ = ("arrow_ipc",)
    ARROW_IPC_FIELD_NUMBER: _ClassVar[int]
    arrow_ipc: bytes
    def __init__(self, arrow_ipc: _Optional[bytes] = ...) -> None: ...
