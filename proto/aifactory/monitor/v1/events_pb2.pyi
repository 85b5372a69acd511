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

class EvidenceKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EVIDENCE_KIND_UNSPECIFIED: _ClassVar[EvidenceKind]
    EVIDENCE_KIND_FEATURE: _ClassVar[EvidenceKind]
    EVIDENCE_KIND_PREDICTION: _ClassVar[EvidenceKind]
    EVIDENCE_KIND_PERFORMANCE: _ClassVar[EvidenceKind]
EVIDENCE_KIND_UNSPECIFIED: EvidenceKind
EVIDENCE_KIND_FEATURE: EvidenceKind
EVIDENCE_KIND_PREDICTION: EvidenceKind
EVIDENCE_KIND_PERFORMANCE: EvidenceKind

class DriftEvidence(_message.Message):
    __slots__ = ("feature", "statistic", "value", "threshold", "window_start", "window_end", "sample_size", "kind", "drifted", "p_value")
    FEATURE_FIELD_NUMBER: _ClassVar[int]
    STATISTIC_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    WINDOW_START_FIELD_NUMBER: _ClassVar[int]
    WINDOW_END_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_SIZE_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    DRIFTED_FIELD_NUMBER: _ClassVar[int]
    P_VALUE_FIELD_NUMBER: _ClassVar[int]
    feature: str
    statistic: str
    value: float
    threshold: float
    window_start: _timestamp_pb2.Timestamp
    window_end: _timestamp_pb2.Timestamp
    sample_size: int
    kind: EvidenceKind
    drifted: bool
    p_value: float
    def __init__(self, feature: _Optional[str] = ..., statistic: _Optional[str] = ..., value: _Optional[float] = ..., threshold: _Optional[float] = ..., window_start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., window_end: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., sample_size: _Optional[int] = ..., kind: _Optional[_Union[EvidenceKind, str]] = ..., drifted: _Optional[bool] = ..., p_value: _Optional[float] = ...) -> None: ...

class DriftDetected(_message.Message):
    __slots__ = ("report_id", "use_case", "model", "evidence", "detected_at")
    REPORT_ID_FIELD_NUMBER: _ClassVar[int]
    USE_CASE_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    EVIDENCE_FIELD_NUMBER: _ClassVar[int]
    DETECTED_AT_FIELD_NUMBER: _ClassVar[int]
    report_id: str
    use_case: str
    model: _common_pb2.ModelRef
    evidence: _containers.RepeatedCompositeFieldContainer[DriftEvidence]
    detected_at: _timestamp_pb2.Timestamp
    def __init__(self, report_id: _Optional[str] = ..., use_case: _Optional[str] = ..., model: _Optional[_Union[_common_pb2.ModelRef, _Mapping]] = ..., evidence: _Optional[_Iterable[_Union[DriftEvidence, _Mapping]]] = ..., detected_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class RollbackRequested(_message.Message):
    __slots__ = ("request_id", "use_case", "model", "alias", "reason", "evidence_ids", "requested_at")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    USE_CASE_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    EVIDENCE_IDS_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_AT_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    use_case: str
    model: _common_pb2.ModelRef
    alias: str
    reason: str
    evidence_ids: _containers.RepeatedScalarFieldContainer[str]
    requested_at: _timestamp_pb2.Timestamp
    def __init__(self, request_id: _Optional[str] = ..., use_case: _Optional[str] = ..., model: _Optional[_Union[_common_pb2.ModelRef, _Mapping]] = ..., alias: _Optional[str] = ..., reason: _Optional[str] = ..., evidence_ids: _Optional[_Iterable[str]] = ..., requested_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
