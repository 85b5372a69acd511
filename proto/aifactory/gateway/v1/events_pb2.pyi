import datetime

from aifactory.common.v1 import common_pb2 as _common_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PredictionLogged(_message.Message):
    __slots__ = ("prediction_id", "use_case", "model", "entity_id", "features", "output", "outputs", "latency_us", "trace_id", "timestamp", "alias", "shadow")
    class FeaturesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _common_pb2.Value
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_common_pb2.Value, _Mapping]] = ...) -> None: ...
    class OutputsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _common_pb2.Value
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_common_pb2.Value, _Mapping]] = ...) -> None: ...
    PREDICTION_ID_FIELD_NUMBER: _ClassVar[int]
    USE_CASE_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    ENTITY_ID_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    LATENCY_US_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    SHADOW_FIELD_NUMBER: _ClassVar[int]
    prediction_id: str
    use_case: str
    model: _common_pb2.ModelRef
    entity_id: str
    features: _containers.MessageMap[str, _common_pb2.Value]
    output: _common_pb2.Value
    outputs: _containers.MessageMap[str, _common_pb2.Value]
    latency_us: int
    trace_id: str
    timestamp: _timestamp_pb2.Timestamp
    alias: str
    shadow: bool
    def __init__(self, prediction_id: _Optional[str] = ..., use_case: _Optional[str] = ..., model: _Optional[_Union[_common_pb2.ModelRef, _Mapping]] = ..., entity_id: _Optional[str] = ..., features: _Optional[_Mapping[str, _common_pb2.Value]] = ..., output: _Optional[_Union[_common_pb2.Value, _Mapping]] = ..., outputs: _Optional[_Mapping[str, _common_pb2.Value]] = ..., latency_us: _Optional[int] = ..., trace_id: _Optional[str] = ..., timestamp: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., alias: _Optional[str] = ..., shadow: _Optional[bool] = ...) -> None: ...

class FeedbackRecorded(_message.Message):
    __slots__ = ("feedback_id", "prediction_id", "use_case", "outcome", "observed_at", "recorded_at", "entity_id", "record_id", "event_time")
    FEEDBACK_ID_FIELD_NUMBER: _ClassVar[int]
    PREDICTION_ID_FIELD_NUMBER: _ClassVar[int]
    USE_CASE_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    OBSERVED_AT_FIELD_NUMBER: _ClassVar[int]
    RECORDED_AT_FIELD_NUMBER: _ClassVar[int]
    ENTITY_ID_FIELD_NUMBER: _ClassVar[int]
    RECORD_ID_FIELD_NUMBER: _ClassVar[int]
    EVENT_TIME_FIELD_NUMBER: _ClassVar[int]
    feedback_id: str
    prediction_id: str
    use_case: str
    outcome: _common_pb2.Value
    observed_at: _timestamp_pb2.Timestamp
    recorded_at: _timestamp_pb2.Timestamp
    entity_id: str
    record_id: str
    event_time: _timestamp_pb2.Timestamp
    def __init__(self, feedback_id: _Optional[str] = ..., prediction_id: _Optional[str] = ..., use_case: _Optional[str] = ..., outcome: _Optional[_Union[_common_pb2.Value, _Mapping]] = ..., observed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., recorded_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., entity_id: _Optional[str] = ..., record_id: _Optional[str] = ..., event_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
