import datetime

from aifactory.common.v1 import common_pb2 as _common_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TrainingReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TRAINING_REASON_UNSPECIFIED: _ClassVar[TrainingReason]
    TRAINING_REASON_MANUAL: _ClassVar[TrainingReason]
    TRAINING_REASON_SCHEDULE: _ClassVar[TrainingReason]
    TRAINING_REASON_DRIFT: _ClassVar[TrainingReason]
TRAINING_REASON_UNSPECIFIED: TrainingReason
TRAINING_REASON_MANUAL: TrainingReason
TRAINING_REASON_SCHEDULE: TrainingReason
TRAINING_REASON_DRIFT: TrainingReason

class TrainingRequested(_message.Message):
    __slots__ = ("request_id", "use_case", "reason", "drift_report_id", "requested_by", "seed", "window", "requested_at", "params")
    class ParamsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    USE_CASE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    DRIFT_REPORT_ID_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_BY_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_AT_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    use_case: str
    reason: TrainingReason
    drift_report_id: str
    requested_by: _common_pb2.Actor
    seed: int
    window: _common_pb2.TimeRange
    requested_at: _timestamp_pb2.Timestamp
    params: _containers.ScalarMap[str, str]
    def __init__(self, request_id: _Optional[str] = ..., use_case: _Optional[str] = ..., reason: _Optional[_Union[TrainingReason, str]] = ..., drift_report_id: _Optional[str] = ..., requested_by: _Optional[_Union[_common_pb2.Actor, _Mapping]] = ..., seed: _Optional[int] = ..., window: _Optional[_Union[_common_pb2.TimeRange, _Mapping]] = ..., requested_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., params: _Optional[_Mapping[str, str]] = ...) -> None: ...

class ModelTrained(_message.Message):
    __slots__ = ("model", "run_id", "datasets", "features", "metrics", "request_id", "artifact_uri", "artifact_sha256", "code_version", "trained_at", "seed", "params", "window", "reason", "drift_report_id")
    class ParamsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    MODEL_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    DATASETS_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    ARTIFACT_URI_FIELD_NUMBER: _ClassVar[int]
    ARTIFACT_SHA256_FIELD_NUMBER: _ClassVar[int]
    CODE_VERSION_FIELD_NUMBER: _ClassVar[int]
    TRAINED_AT_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    DRIFT_REPORT_ID_FIELD_NUMBER: _ClassVar[int]
    model: _common_pb2.ModelRef
    run_id: str
    datasets: _containers.RepeatedCompositeFieldContainer[_common_pb2.DatasetRef]
    features: _containers.RepeatedCompositeFieldContainer[_common_pb2.FeatureRef]
    metrics: _containers.RepeatedCompositeFieldContainer[_common_pb2.Metric]
    request_id: str
    artifact_uri: str
    artifact_sha256: str
    code_version: str
    trained_at: _timestamp_pb2.Timestamp
    seed: int
    params: _containers.ScalarMap[str, str]
    window: _common_pb2.TimeRange
    reason: TrainingReason
    drift_report_id: str
    def __init__(self, model: _Optional[_Union[_common_pb2.ModelRef, _Mapping]] = ..., run_id: _Optional[str] = ..., datasets: _Optional[_Iterable[_Union[_common_pb2.DatasetRef, _Mapping]]] = ..., features: _Optional[_Iterable[_Union[_common_pb2.FeatureRef, _Mapping]]] = ..., metrics: _Optional[_Iterable[_Union[_common_pb2.Metric, _Mapping]]] = ..., request_id: _Optional[str] = ..., artifact_uri: _Optional[str] = ..., artifact_sha256: _Optional[str] = ..., code_version: _Optional[str] = ..., trained_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., seed: _Optional[int] = ..., params: _Optional[_Mapping[str, str]] = ..., window: _Optional[_Union[_common_pb2.TimeRange, _Mapping]] = ..., reason: _Optional[_Union[TrainingReason, str]] = ..., drift_report_id: _Optional[str] = ...) -> None: ...

class TrainingSkipped(_message.Message):
    __slots__ = ("request_id", "use_case", "reason", "drift_report_id", "code", "message", "labelled_rows", "needed_rows", "window", "waited_s", "skipped_at")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    USE_CASE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    DRIFT_REPORT_ID_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    LABELLED_ROWS_FIELD_NUMBER: _ClassVar[int]
    NEEDED_ROWS_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    WAITED_S_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_AT_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    use_case: str
    reason: TrainingReason
    drift_report_id: str
    code: str
    message: str
    labelled_rows: int
    needed_rows: int
    window: _common_pb2.TimeRange
    waited_s: float
    skipped_at: _timestamp_pb2.Timestamp
    def __init__(self, request_id: _Optional[str] = ..., use_case: _Optional[str] = ..., reason: _Optional[_Union[TrainingReason, str]] = ..., drift_report_id: _Optional[str] = ..., code: _Optional[str] = ..., message: _Optional[str] = ..., labelled_rows: _Optional[int] = ..., needed_rows: _Optional[int] = ..., window: _Optional[_Union[_common_pb2.TimeRange, _Mapping]] = ..., waited_s: _Optional[float] = ..., skipped_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
