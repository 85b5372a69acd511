import datetime

from aifactory.common.v1 import common_pb2 as _common_pb2
from aifactory.evaluator.v1 import events_pb2 as _events_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class EvaluationReport(_message.Message):
    __slots__ = ("report_id", "model", "champion", "passed", "gates", "candidate_metrics", "champion_metrics", "dataset", "window", "created_at", "slices")
    class SlicesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: SliceMetrics
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[SliceMetrics, _Mapping]] = ...) -> None: ...
    REPORT_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    CHAMPION_FIELD_NUMBER: _ClassVar[int]
    PASSED_FIELD_NUMBER: _ClassVar[int]
    GATES_FIELD_NUMBER: _ClassVar[int]
    CANDIDATE_METRICS_FIELD_NUMBER: _ClassVar[int]
    CHAMPION_METRICS_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    SLICES_FIELD_NUMBER: _ClassVar[int]
    report_id: str
    model: _common_pb2.ModelRef
    champion: _common_pb2.ModelRef
    passed: bool
    gates: _containers.RepeatedCompositeFieldContainer[_events_pb2.GateResult]
    candidate_metrics: _containers.RepeatedCompositeFieldContainer[_common_pb2.Metric]
    champion_metrics: _containers.RepeatedCompositeFieldContainer[_common_pb2.Metric]
    dataset: _common_pb2.DatasetRef
    window: _common_pb2.TimeRange
    created_at: _timestamp_pb2.Timestamp
    slices: _containers.MessageMap[str, SliceMetrics]
    def __init__(self, report_id: _Optional[str] = ..., model: _Optional[_Union[_common_pb2.ModelRef, _Mapping]] = ..., champion: _Optional[_Union[_common_pb2.ModelRef, _Mapping]] = ..., passed: _Optional[bool] = ..., gates: _Optional[_Iterable[_Union[_events_pb2.GateResult, _Mapping]]] = ..., candidate_metrics: _Optional[_Iterable[_Union[_common_pb2.Metric, _Mapping]]] = ..., champion_metrics: _Optional[_Iterable[_Union[_common_pb2.Metric, _Mapping]]] = ..., dataset: _Optional[_Union[_common_pb2.DatasetRef, _Mapping]] = ..., window: _Optional[_Union[_common_pb2.TimeRange, _Mapping]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., slices: _Optional[_Mapping[str, SliceMetrics]] = ...) -> None: ...

class SliceMetrics(_message.Message):
    __slots__ = ("metrics", "sample_size")
    METRICS_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_SIZE_FIELD_NUMBER: _ClassVar[int]
    metrics: _containers.RepeatedCompositeFieldContainer[_common_pb2.Metric]
    sample_size: int
    def __init__(self, metrics: _Optional[_Iterable[_Union[_common_pb2.Metric, _Mapping]]] = ..., sample_size: _Optional[int] = ...) -> None: ...

class EvaluateRequest(_message.Message):
    __slots__ = ("model", "champion", "window")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    CHAMPION_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    model: _common_pb2.ModelRef
    champion: _common_pb2.ModelRef
    window: _common_pb2.TimeRange
    def __init__(self, model: _Optional[_Union[_common_pb2.ModelRef, _Mapping]] = ..., champion: _Optional[_Union[_common_pb2.ModelRef, _Mapping]] = ..., window: _Optional[_Union[_common_pb2.TimeRange, _Mapping]] = ...) -> None: ...

class EvaluateResponse(_message.Message):
    __slots__ = ("report",)
    REPORT_FIELD_NUMBER: _ClassVar[int]
    report: EvaluationReport
    def __init__(self, report: _Optional[_Union[EvaluationReport, _Mapping]] = ...) -> None: ...

class GetEvaluationReportRequest(_message.Message):
    __slots__ = ("report_id",)
    REPORT_ID_FIELD_NUMBER: _ClassVar[int]
    report_id: str
    def __init__(self, report_id: _Optional[str] = ...) -> None: ...

class GetEvaluationReportResponse(_message.Message):
    __slots__ = ("report",)
    REPORT_FIELD_NUMBER: _ClassVar[int]
    report: EvaluationReport
    def __init__(self, report: _Optional[_Union[EvaluationReport, _Mapping]] = ...) -> None: ...
