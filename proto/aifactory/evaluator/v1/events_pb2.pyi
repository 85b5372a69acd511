import datetime

from aifactory.common.v1 import common_pb2 as _common_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GateResult(_message.Message):
    __slots__ = ("gate", "metric", "value", "threshold", "passed", "comparator", "message")
    GATE_FIELD_NUMBER: _ClassVar[int]
    METRIC_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    PASSED_FIELD_NUMBER: _ClassVar[int]
    COMPARATOR_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    gate: str
    metric: str
    value: float
    threshold: float
    passed: bool
    comparator: str
    message: str
    def __init__(self, gate: _Optional[str] = ..., metric: _Optional[str] = ..., value: _Optional[float] = ..., threshold: _Optional[float] = ..., passed: _Optional[bool] = ..., comparator: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class ModelEvaluated(_message.Message):
    __slots__ = ("report_id", "model", "champion", "passed", "gates", "metrics", "dataset", "evaluated_at")
    REPORT_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    CHAMPION_FIELD_NUMBER: _ClassVar[int]
    PASSED_FIELD_NUMBER: _ClassVar[int]
    GATES_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    EVALUATED_AT_FIELD_NUMBER: _ClassVar[int]
    report_id: str
    model: _common_pb2.ModelRef
    champion: _common_pb2.ModelRef
    passed: bool
    gates: _containers.RepeatedCompositeFieldContainer[GateResult]
    metrics: _containers.RepeatedCompositeFieldContainer[_common_pb2.Metric]
    dataset: _common_pb2.DatasetRef
    evaluated_at: _timestamp_pb2.Timestamp
    def __init__(self, report_id: _Optional[str] = ..., model: _Optional[_Union[_common_pb2.ModelRef, _Mapping]] = ..., champion: _Optional[_Union[_common_pb2.ModelRef, _Mapping]] = ..., passed: _Optional[bool] = ..., gates: _Optional[_Iterable[_Union[GateResult, _Mapping]]] = ..., metrics: _Optional[_Iterable[_Union[_common_pb2.Metric, _Mapping]]] = ..., dataset: _Optional[_Union[_common_pb2.DatasetRef, _Mapping]] = ..., evaluated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
