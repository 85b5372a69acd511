import datetime

from aifactory.common.v1 import common_pb2 as _common_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PredictionInput(_message.Message):
    __slots__ = ("entity_id", "features")
    class FeaturesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _common_pb2.Value
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_common_pb2.Value, _Mapping]] = ...) -> None: ...
    ENTITY_ID_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    entity_id: str
    features: _containers.MessageMap[str, _common_pb2.Value]
    def __init__(self, entity_id: _Optional[str] = ..., features: _Optional[_Mapping[str, _common_pb2.Value]] = ...) -> None: ...

class Prediction(_message.Message):
    __slots__ = ("prediction_id", "model", "output", "outputs", "entity_id", "error")
    class OutputsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _common_pb2.Value
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_common_pb2.Value, _Mapping]] = ...) -> None: ...
    PREDICTION_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    ENTITY_ID_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    prediction_id: str
    model: _common_pb2.ModelRef
    output: _common_pb2.Value
    outputs: _containers.MessageMap[str, _common_pb2.Value]
    entity_id: str
    error: str
    def __init__(self, prediction_id: _Optional[str] = ..., model: _Optional[_Union[_common_pb2.ModelRef, _Mapping]] = ..., output: _Optional[_Union[_common_pb2.Value, _Mapping]] = ..., outputs: _Optional[_Mapping[str, _common_pb2.Value]] = ..., entity_id: _Optional[str] = ..., error: _Optional[str] = ...) -> None: ...

class PredictRequest(_message.Message):
    __slots__ = ("use_case", "entity_id", "features")
    class FeaturesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _common_pb2.Value
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_common_pb2.Value, _Mapping]] = ...) -> None: ...
    USE_CASE_FIELD_NUMBER: _ClassVar[int]
    ENTITY_ID_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    use_case: str
    entity_id: str
    features: _containers.MessageMap[str, _common_pb2.Value]
    def __init__(self, use_case: _Optional[str] = ..., entity_id: _Optional[str] = ..., features: _Optional[_Mapping[str, _common_pb2.Value]] = ...) -> None: ...

class PredictResponse(_message.Message):
    __slots__ = ("prediction",)
    PREDICTION_FIELD_NUMBER: _ClassVar[int]
    prediction: Prediction
    def __init__(self, prediction: _Optional[_Union[Prediction, _Mapping]] = ...) -> None: ...

class PredictBatchRequest(_message.Message):
    __slots__ = ("use_case", "inputs")
    USE_CASE_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    use_case: str
    inputs: _containers.RepeatedCompositeFieldContainer[PredictionInput]
    def __init__(self, use_case: _Optional[str] = ..., inputs: _Optional[_Iterable[_Union[PredictionInput, _Mapping]]] = ...) -> None: ...

class PredictBatchResponse(_message.Message):
    __slots__ = ("predictions",)
    PREDICTIONS_FIELD_NUMBER: _ClassVar[int]
    predictions: _containers.RepeatedCompositeFieldContainer[Prediction]
    def __init__(self, predictions: _Optional[_Iterable[_Union[Prediction, _Mapping]]] = ...) -> None: ...

class RecordFeedbackRequest(_message.Message):
    __slots__ = ("prediction_id", "outcome", "observed_at", "feedback_id", "use_case", "record_id", "event_time", "entity_id")
    PREDICTION_ID_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    OBSERVED_AT_FIELD_NUMBER: _ClassVar[int]
    FEEDBACK_ID_FIELD_NUMBER: _ClassVar[int]
    USE_CASE_FIELD_NUMBER: _ClassVar[int]
    RECORD_ID_FIELD_NUMBER: _ClassVar[int]
    EVENT_TIME_FIELD_NUMBER: _ClassVar[int]
    ENTITY_ID_FIELD_NUMBER: _ClassVar[int]
    prediction_id: str
    outcome: _common_pb2.Value
    observed_at: _timestamp_pb2.Timestamp
    feedback_id: str
    use_case: str
    record_id: str
    event_time: _timestamp_pb2.Timestamp
    entity_id: str
    def __init__(self, prediction_id: _Optional[str] = ..., outcome: _Optional[_Union[_common_pb2.Value, _Mapping]] = ..., observed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., feedback_id: _Optional[str] = ..., use_case: _Optional[str] = ..., record_id: _Optional[str] = ..., event_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., entity_id: _Optional[str] = ...) -> None: ...

class RecordFeedbackResponse(_message.Message):
    __slots__ = ("feedback_id",)
    FEEDBACK_ID_FIELD_NUMBER: _ClassVar[int]
    feedback_id: str
    def __init__(self, feedback_id: _Optional[str] = ...) -> None: ...
