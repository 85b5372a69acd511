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

class AliasChangeKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ALIAS_CHANGE_KIND_UNSPECIFIED: _ClassVar[AliasChangeKind]
    ALIAS_CHANGE_KIND_PROMOTE: _ClassVar[AliasChangeKind]
    ALIAS_CHANGE_KIND_ROLLBACK: _ClassVar[AliasChangeKind]
    ALIAS_CHANGE_KIND_SET: _ClassVar[AliasChangeKind]
    ALIAS_CHANGE_KIND_DELETE: _ClassVar[AliasChangeKind]

class UseCaseState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    USE_CASE_STATE_UNSPECIFIED: _ClassVar[UseCaseState]
    USE_CASE_STATE_ACTIVE: _ClassVar[UseCaseState]
    USE_CASE_STATE_RETIRED: _ClassVar[UseCaseState]
ALIAS_CHANGE_KIND_UNSPECIFIED: AliasChangeKind
ALIAS_CHANGE_KIND_PROMOTE: AliasChangeKind
ALIAS_CHANGE_KIND_ROLLBACK: AliasChangeKind
ALIAS_CHANGE_KIND_SET: AliasChangeKind
ALIAS_CHANGE_KIND_DELETE: AliasChangeKind
USE_CASE_STATE_UNSPECIFIED: UseCaseState
USE_CASE_STATE_ACTIVE: UseCaseState
USE_CASE_STATE_RETIRED: UseCaseState

class AliasChanged(_message.Message):
    __slots__ = ("use_case", "model_name", "alias", "new_version", "old_version", "reason", "actor", "evidence_ids", "kind", "changed_at", "audit_event_id")
    USE_CASE_FIELD_NUMBER: _ClassVar[int]
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    NEW_VERSION_FIELD_NUMBER: _ClassVar[int]
    OLD_VERSION_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    EVIDENCE_IDS_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    CHANGED_AT_FIELD_NUMBER: _ClassVar[int]
    AUDIT_EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    use_case: str
    model_name: str
    alias: str
    new_version: int
    old_version: int
    reason: str
    actor: _common_pb2.Actor
    evidence_ids: _containers.RepeatedScalarFieldContainer[str]
    kind: AliasChangeKind
    changed_at: _timestamp_pb2.Timestamp
    audit_event_id: str
    def __init__(self, use_case: _Optional[str] = ..., model_name: _Optional[str] = ..., alias: _Optional[str] = ..., new_version: _Optional[int] = ..., old_version: _Optional[int] = ..., reason: _Optional[str] = ..., actor: _Optional[_Union[_common_pb2.Actor, _Mapping]] = ..., evidence_ids: _Optional[_Iterable[str]] = ..., kind: _Optional[_Union[AliasChangeKind, str]] = ..., changed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., audit_event_id: _Optional[str] = ...) -> None: ...

class UseCaseChanged(_message.Message):
    __slots__ = ("use_case", "version", "state", "spec_yaml", "spec_sha256", "actor", "changed_at", "audit_event_id", "reason")
    USE_CASE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    SPEC_YAML_FIELD_NUMBER: _ClassVar[int]
    SPEC_SHA256_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    CHANGED_AT_FIELD_NUMBER: _ClassVar[int]
    AUDIT_EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    use_case: str
    version: int
    state: UseCaseState
    spec_yaml: str
    spec_sha256: str
    actor: _common_pb2.Actor
    changed_at: _timestamp_pb2.Timestamp
    audit_event_id: str
    reason: str
    def __init__(self, use_case: _Optional[str] = ..., version: _Optional[int] = ..., state: _Optional[_Union[UseCaseState, str]] = ..., spec_yaml: _Optional[str] = ..., spec_sha256: _Optional[str] = ..., actor: _Optional[_Union[_common_pb2.Actor, _Mapping]] = ..., changed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., audit_event_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...
