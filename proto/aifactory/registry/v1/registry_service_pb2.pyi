import datetime

from aifactory.common.v1 import common_pb2 as _common_pb2
from aifactory.evaluator.v1 import events_pb2 as _events_pb2
from aifactory.registry.v1 import events_pb2 as _events_pb2_1
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ModelVersionStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MODEL_VERSION_STATUS_UNSPECIFIED: _ClassVar[ModelVersionStatus]
    MODEL_VERSION_STATUS_CANDIDATE: _ClassVar[ModelVersionStatus]
    MODEL_VERSION_STATUS_EVALUATION_FAILED: _ClassVar[ModelVersionStatus]
    MODEL_VERSION_STATUS_PENDING_APPROVAL: _ClassVar[ModelVersionStatus]
    MODEL_VERSION_STATUS_APPROVED: _ClassVar[ModelVersionStatus]
    MODEL_VERSION_STATUS_REJECTED: _ClassVar[ModelVersionStatus]
    MODEL_VERSION_STATUS_ARCHIVED: _ClassVar[ModelVersionStatus]

class ApprovalDecision(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    APPROVAL_DECISION_UNSPECIFIED: _ClassVar[ApprovalDecision]
    APPROVAL_DECISION_APPROVE: _ClassVar[ApprovalDecision]
    APPROVAL_DECISION_REJECT: _ClassVar[ApprovalDecision]

class RunStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RUN_STATUS_UNSPECIFIED: _ClassVar[RunStatus]
    RUN_STATUS_RUNNING: _ClassVar[RunStatus]
    RUN_STATUS_FINISHED: _ClassVar[RunStatus]
    RUN_STATUS_FAILED: _ClassVar[RunStatus]

class UseCaseApplyOutcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    USE_CASE_APPLY_OUTCOME_UNSPECIFIED: _ClassVar[UseCaseApplyOutcome]
    USE_CASE_APPLY_OUTCOME_CREATED: _ClassVar[UseCaseApplyOutcome]
    USE_CASE_APPLY_OUTCOME_UPDATED: _ClassVar[UseCaseApplyOutcome]
    USE_CASE_APPLY_OUTCOME_UNCHANGED: _ClassVar[UseCaseApplyOutcome]
MODEL_VERSION_STATUS_UNSPECIFIED: ModelVersionStatus
MODEL_VERSION_STATUS_CANDIDATE: ModelVersionStatus
MODEL_VERSION_STATUS_EVALUATION_FAILED: ModelVersionStatus
MODEL_VERSION_STATUS_PENDING_APPROVAL: ModelVersionStatus
MODEL_VERSION_STATUS_APPROVED: ModelVersionStatus
MODEL_VERSION_STATUS_REJECTED: ModelVersionStatus
MODEL_VERSION_STATUS_ARCHIVED: ModelVersionStatus
APPROVAL_DECISION_UNSPECIFIED: ApprovalDecision
APPROVAL_DECISION_APPROVE: ApprovalDecision
APPROVAL_DECISION_REJECT: ApprovalDecision
RUN_STATUS_UNSPECIFIED: RunStatus
RUN_STATUS_RUNNING: RunStatus
RUN_STATUS_FINISHED: RunStatus
RUN_STATUS_FAILED: RunStatus
USE_CASE_APPLY_OUTCOME_UNSPECIFIED: UseCaseApplyOutcome
USE_CASE_APPLY_OUTCOME_CREATED: UseCaseApplyOutcome
USE_CASE_APPLY_OUTCOME_UPDATED: UseCaseApplyOutcome
USE_CASE_APPLY_OUTCOME_UNCHANGED: UseCaseApplyOutcome

class ModelVersion(_message.Message):
    __slots__ = ("ref", "status", "run_id", "training_request_id", "artifact_uri", "artifact_sha256", "reference_profile_uri", "datasets", "features", "metrics", "code_version", "params", "labels", "aliases", "evaluation_report_id", "created_at", "created_by", "signature", "drift_report_id", "reference_profile_sha256")
    class ParamsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    REF_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    TRAINING_REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    ARTIFACT_URI_FIELD_NUMBER: _ClassVar[int]
    ARTIFACT_SHA256_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_PROFILE_URI_FIELD_NUMBER: _ClassVar[int]
    DATASETS_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    CODE_VERSION_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    ALIASES_FIELD_NUMBER: _ClassVar[int]
    EVALUATION_REPORT_ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    CREATED_BY_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    DRIFT_REPORT_ID_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_PROFILE_SHA256_FIELD_NUMBER: _ClassVar[int]
    ref: _common_pb2.ModelRef
    status: ModelVersionStatus
    run_id: str
    training_request_id: str
    artifact_uri: str
    artifact_sha256: str
    reference_profile_uri: str
    datasets: _containers.RepeatedCompositeFieldContainer[_common_pb2.DatasetRef]
    features: _containers.RepeatedCompositeFieldContainer[_common_pb2.FeatureRef]
    metrics: _containers.RepeatedCompositeFieldContainer[_common_pb2.Metric]
    code_version: str
    params: _containers.ScalarMap[str, str]
    labels: _containers.ScalarMap[str, str]
    aliases: _containers.RepeatedScalarFieldContainer[str]
    evaluation_report_id: str
    created_at: _timestamp_pb2.Timestamp
    created_by: _common_pb2.Actor
    signature: ModelSignature
    drift_report_id: str
    reference_profile_sha256: str
    def __init__(self, ref: _Optional[_Union[_common_pb2.ModelRef, _Mapping]] = ..., status: _Optional[_Union[ModelVersionStatus, str]] = ..., run_id: _Optional[str] = ..., training_request_id: _Optional[str] = ..., artifact_uri: _Optional[str] = ..., artifact_sha256: _Optional[str] = ..., reference_profile_uri: _Optional[str] = ..., datasets: _Optional[_Iterable[_Union[_common_pb2.DatasetRef, _Mapping]]] = ..., features: _Optional[_Iterable[_Union[_common_pb2.FeatureRef, _Mapping]]] = ..., metrics: _Optional[_Iterable[_Union[_common_pb2.Metric, _Mapping]]] = ..., code_version: _Optional[str] = ..., params: _Optional[_Mapping[str, str]] = ..., labels: _Optional[_Mapping[str, str]] = ..., aliases: _Optional[_Iterable[str]] = ..., evaluation_report_id: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., created_by: _Optional[_Union[_common_pb2.Actor, _Mapping]] = ..., signature: _Optional[_Union[ModelSignature, _Mapping]] = ..., drift_report_id: _Optional[str] = ..., reference_profile_sha256: _Optional[str] = ...) -> None: ...

class ModelSignature(_message.Message):
    __slots__ = ("input_names", "output_names", "task")
    INPUT_NAMES_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_NAMES_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    input_names: _containers.RepeatedScalarFieldContainer[str]
    output_names: _containers.RepeatedScalarFieldContainer[str]
    task: str
    def __init__(self, input_names: _Optional[_Iterable[str]] = ..., output_names: _Optional[_Iterable[str]] = ..., task: _Optional[str] = ...) -> None: ...

class Run(_message.Message):
    __slots__ = ("run_id", "use_case", "model_name", "training_request_id", "drift_report_id", "status", "params", "environment", "code_version", "datasets", "features", "seed", "started_at", "finished_at", "duration_s", "metrics", "error", "created_by")
    class ParamsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class EnvironmentEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    USE_CASE_FIELD_NUMBER: _ClassVar[int]
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    TRAINING_REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    DRIFT_REPORT_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_FIELD_NUMBER: _ClassVar[int]
    CODE_VERSION_FIELD_NUMBER: _ClassVar[int]
    DATASETS_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    DURATION_S_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    CREATED_BY_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    use_case: str
    model_name: str
    training_request_id: str
    drift_report_id: str
    status: RunStatus
    params: _containers.ScalarMap[str, str]
    environment: _containers.ScalarMap[str, str]
    code_version: str
    datasets: _containers.RepeatedCompositeFieldContainer[_common_pb2.DatasetRef]
    features: _containers.RepeatedCompositeFieldContainer[_common_pb2.FeatureRef]
    seed: int
    started_at: _timestamp_pb2.Timestamp
    finished_at: _timestamp_pb2.Timestamp
    duration_s: float
    metrics: _containers.RepeatedCompositeFieldContainer[_common_pb2.Metric]
    error: str
    created_by: _common_pb2.Actor
    def __init__(self, run_id: _Optional[str] = ..., use_case: _Optional[str] = ..., model_name: _Optional[str] = ..., training_request_id: _Optional[str] = ..., drift_report_id: _Optional[str] = ..., status: _Optional[_Union[RunStatus, str]] = ..., params: _Optional[_Mapping[str, str]] = ..., environment: _Optional[_Mapping[str, str]] = ..., code_version: _Optional[str] = ..., datasets: _Optional[_Iterable[_Union[_common_pb2.DatasetRef, _Mapping]]] = ..., features: _Optional[_Iterable[_Union[_common_pb2.FeatureRef, _Mapping]]] = ..., seed: _Optional[int] = ..., started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., finished_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., duration_s: _Optional[float] = ..., metrics: _Optional[_Iterable[_Union[_common_pb2.Metric, _Mapping]]] = ..., error: _Optional[str] = ..., created_by: _Optional[_Union[_common_pb2.Actor, _Mapping]] = ...) -> None: ...

class Evaluation(_message.Message):
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
    gates: _containers.RepeatedCompositeFieldContainer[_events_pb2.GateResult]
    metrics: _containers.RepeatedCompositeFieldContainer[_common_pb2.Metric]
    dataset: _common_pb2.DatasetRef
    evaluated_at: _timestamp_pb2.Timestamp
    def __init__(self, report_id: _Optional[str] = ..., model: _Optional[_Union[_common_pb2.ModelRef, _Mapping]] = ..., champion: _Optional[_Union[_common_pb2.ModelRef, _Mapping]] = ..., passed: _Optional[bool] = ..., gates: _Optional[_Iterable[_Union[_events_pb2.GateResult, _Mapping]]] = ..., metrics: _Optional[_Iterable[_Union[_common_pb2.Metric, _Mapping]]] = ..., dataset: _Optional[_Union[_common_pb2.DatasetRef, _Mapping]] = ..., evaluated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ModelAlias(_message.Message):
    __slots__ = ("use_case", "model_name", "alias", "version", "updated_at", "updated_by", "reason")
    USE_CASE_FIELD_NUMBER: _ClassVar[int]
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_BY_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    use_case: str
    model_name: str
    alias: str
    version: int
    updated_at: _timestamp_pb2.Timestamp
    updated_by: _common_pb2.Actor
    reason: str
    def __init__(self, use_case: _Optional[str] = ..., model_name: _Optional[str] = ..., alias: _Optional[str] = ..., version: _Optional[int] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_by: _Optional[_Union[_common_pb2.Actor, _Mapping]] = ..., reason: _Optional[str] = ...) -> None: ...

class AuditEvent(_message.Message):
    __slots__ = ("event_id", "sequence", "time", "actor", "action", "use_case", "model", "alias", "reason", "evidence_ids", "details_json", "prev_hash", "hash")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    USE_CASE_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    EVIDENCE_IDS_FIELD_NUMBER: _ClassVar[int]
    DETAILS_JSON_FIELD_NUMBER: _ClassVar[int]
    PREV_HASH_FIELD_NUMBER: _ClassVar[int]
    HASH_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    sequence: int
    time: _timestamp_pb2.Timestamp
    actor: _common_pb2.Actor
    action: str
    use_case: str
    model: _common_pb2.ModelRef
    alias: str
    reason: str
    evidence_ids: _containers.RepeatedScalarFieldContainer[str]
    details_json: str
    prev_hash: str
    hash: str
    def __init__(self, event_id: _Optional[str] = ..., sequence: _Optional[int] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., actor: _Optional[_Union[_common_pb2.Actor, _Mapping]] = ..., action: _Optional[str] = ..., use_case: _Optional[str] = ..., model: _Optional[_Union[_common_pb2.ModelRef, _Mapping]] = ..., alias: _Optional[str] = ..., reason: _Optional[str] = ..., evidence_ids: _Optional[_Iterable[str]] = ..., details_json: _Optional[str] = ..., prev_hash: _Optional[str] = ..., hash: _Optional[str] = ...) -> None: ...

class RegisterModelVersionRequest(_message.Message):
    __slots__ = ("use_case", "model_name", "run_id", "training_request_id", "artifact_uri", "artifact_sha256", "reference_profile_uri", "datasets", "features", "metrics", "code_version", "params", "labels", "idempotency_key", "artifact_content", "reference_profile_content", "reference_profile_sha256", "signature", "drift_report_id")
    class ParamsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    USE_CASE_FIELD_NUMBER: _ClassVar[int]
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    TRAINING_REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    ARTIFACT_URI_FIELD_NUMBER: _ClassVar[int]
    ARTIFACT_SHA256_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_PROFILE_URI_FIELD_NUMBER: _ClassVar[int]
    DATASETS_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    CODE_VERSION_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    ARTIFACT_CONTENT_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_PROFILE_CONTENT_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_PROFILE_SHA256_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    DRIFT_REPORT_ID_FIELD_NUMBER: _ClassVar[int]
    use_case: str
    model_name: str
    run_id: str
    training_request_id: str
    artifact_uri: str
    artifact_sha256: str
    reference_profile_uri: str
    datasets: _containers.RepeatedCompositeFieldContainer[_common_pb2.DatasetRef]
    features: _containers.RepeatedCompositeFieldContainer[_common_pb2.FeatureRef]
    metrics: _containers.RepeatedCompositeFieldContainer[_common_pb2.Metric]
    code_version: str
    params: _containers.ScalarMap[str, str]
    labels: _containers.ScalarMap[str, str]
    idempotency_key: str
    artifact_content: bytes
    reference_profile_content: bytes
    reference_profile_sha256: str
    signature: ModelSignature
    drift_report_id: str
    def __init__(self, use_case: _Optional[str] = ..., model_name: _Optional[str] = ..., run_id: _Optional[str] = ..., training_request_id: _Optional[str] = ..., artifact_uri: _Optional[str] = ..., artifact_sha256: _Optional[str] = ..., reference_profile_uri: _Optional[str] = ..., datasets: _Optional[_Iterable[_Union[_common_pb2.DatasetRef, _Mapping]]] = ..., features: _Optional[_Iterable[_Union[_common_pb2.FeatureRef, _Mapping]]] = ..., metrics: _Optional[_Iterable[_Union[_common_pb2.Metric, _Mapping]]] = ..., code_version: _Optional[str] = ..., params: _Optional[_Mapping[str, str]] = ..., labels: _Optional[_Mapping[str, str]] = ..., idempotency_key: _Optional[str] = ..., artifact_content: _Optional[bytes] = ..., reference_profile_content: _Optional[bytes] = ..., reference_profile_sha256: _Optional[str] = ..., signature: _Optional[_Union[ModelSignature, _Mapping]] = ..., drift_report_id: _Optional[str] = ...) -> None: ...

class RegisterModelVersionResponse(_message.Message):
    __slots__ = ("model_version",)
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    model_version: ModelVersion
    def __init__(self, model_version: _Optional[_Union[ModelVersion, _Mapping]] = ...) -> None: ...

class GetModelVersionRequest(_message.Message):
    __slots__ = ("ref",)
    REF_FIELD_NUMBER: _ClassVar[int]
    ref: _common_pb2.ModelRef
    def __init__(self, ref: _Optional[_Union[_common_pb2.ModelRef, _Mapping]] = ...) -> None: ...

class GetModelVersionResponse(_message.Message):
    __slots__ = ("model_version",)
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    model_version: ModelVersion
    def __init__(self, model_version: _Optional[_Union[ModelVersion, _Mapping]] = ...) -> None: ...

class ListModelVersionsRequest(_message.Message):
    __slots__ = ("use_case", "model_name", "status", "page_size", "page_token")
    USE_CASE_FIELD_NUMBER: _ClassVar[int]
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    use_case: str
    model_name: str
    status: ModelVersionStatus
    page_size: int
    page_token: str
    def __init__(self, use_case: _Optional[str] = ..., model_name: _Optional[str] = ..., status: _Optional[_Union[ModelVersionStatus, str]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListModelVersionsResponse(_message.Message):
    __slots__ = ("model_versions", "next_page_token")
    MODEL_VERSIONS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    model_versions: _containers.RepeatedCompositeFieldContainer[ModelVersion]
    next_page_token: str
    def __init__(self, model_versions: _Optional[_Iterable[_Union[ModelVersion, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class SetAliasRequest(_message.Message):
    __slots__ = ("use_case", "model_name", "alias", "version", "reason", "evidence_ids", "expected_version")
    USE_CASE_FIELD_NUMBER: _ClassVar[int]
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    EVIDENCE_IDS_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    use_case: str
    model_name: str
    alias: str
    version: int
    reason: str
    evidence_ids: _containers.RepeatedScalarFieldContainer[str]
    expected_version: int
    def __init__(self, use_case: _Optional[str] = ..., model_name: _Optional[str] = ..., alias: _Optional[str] = ..., version: _Optional[int] = ..., reason: _Optional[str] = ..., evidence_ids: _Optional[_Iterable[str]] = ..., expected_version: _Optional[int] = ...) -> None: ...

class SetAliasResponse(_message.Message):
    __slots__ = ("alias", "previous_version", "audit_event_id")
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_VERSION_FIELD_NUMBER: _ClassVar[int]
    AUDIT_EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    alias: ModelAlias
    previous_version: int
    audit_event_id: str
    def __init__(self, alias: _Optional[_Union[ModelAlias, _Mapping]] = ..., previous_version: _Optional[int] = ..., audit_event_id: _Optional[str] = ...) -> None: ...

class GetAliasRequest(_message.Message):
    __slots__ = ("use_case", "model_name", "alias")
    USE_CASE_FIELD_NUMBER: _ClassVar[int]
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    use_case: str
    model_name: str
    alias: str
    def __init__(self, use_case: _Optional[str] = ..., model_name: _Optional[str] = ..., alias: _Optional[str] = ...) -> None: ...

class GetAliasResponse(_message.Message):
    __slots__ = ("alias", "model_version")
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    alias: ModelAlias
    model_version: ModelVersion
    def __init__(self, alias: _Optional[_Union[ModelAlias, _Mapping]] = ..., model_version: _Optional[_Union[ModelVersion, _Mapping]] = ...) -> None: ...

class ApproveModelVersionRequest(_message.Message):
    __slots__ = ("ref", "decision", "comment", "evidence_ids")
    REF_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    COMMENT_FIELD_NUMBER: _ClassVar[int]
    EVIDENCE_IDS_FIELD_NUMBER: _ClassVar[int]
    ref: _common_pb2.ModelRef
    decision: ApprovalDecision
    comment: str
    evidence_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, ref: _Optional[_Union[_common_pb2.ModelRef, _Mapping]] = ..., decision: _Optional[_Union[ApprovalDecision, str]] = ..., comment: _Optional[str] = ..., evidence_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class ApproveModelVersionResponse(_message.Message):
    __slots__ = ("model_version", "audit_event_id")
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    AUDIT_EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    model_version: ModelVersion
    audit_event_id: str
    def __init__(self, model_version: _Optional[_Union[ModelVersion, _Mapping]] = ..., audit_event_id: _Optional[str] = ...) -> None: ...

class RollbackRequest(_message.Message):
    __slots__ = ("use_case", "model_name", "alias", "to_version", "reason", "evidence_ids")
    USE_CASE_FIELD_NUMBER: _ClassVar[int]
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    TO_VERSION_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    EVIDENCE_IDS_FIELD_NUMBER: _ClassVar[int]
    use_case: str
    model_name: str
    alias: str
    to_version: int
    reason: str
    evidence_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, use_case: _Optional[str] = ..., model_name: _Optional[str] = ..., alias: _Optional[str] = ..., to_version: _Optional[int] = ..., reason: _Optional[str] = ..., evidence_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class RollbackResponse(_message.Message):
    __slots__ = ("alias", "previous_version", "audit_event_id")
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_VERSION_FIELD_NUMBER: _ClassVar[int]
    AUDIT_EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    alias: ModelAlias
    previous_version: int
    audit_event_id: str
    def __init__(self, alias: _Optional[_Union[ModelAlias, _Mapping]] = ..., previous_version: _Optional[int] = ..., audit_event_id: _Optional[str] = ...) -> None: ...

class GetLineageRequest(_message.Message):
    __slots__ = ("model", "prediction_id")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    PREDICTION_ID_FIELD_NUMBER: _ClassVar[int]
    model: _common_pb2.ModelRef
    prediction_id: str
    def __init__(self, model: _Optional[_Union[_common_pb2.ModelRef, _Mapping]] = ..., prediction_id: _Optional[str] = ...) -> None: ...

class GetLineageResponse(_message.Message):
    __slots__ = ("model_version", "prediction_id", "predicted_at", "audit_events", "run", "evaluations", "served_alias", "shadow")
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    PREDICTION_ID_FIELD_NUMBER: _ClassVar[int]
    PREDICTED_AT_FIELD_NUMBER: _ClassVar[int]
    AUDIT_EVENTS_FIELD_NUMBER: _ClassVar[int]
    RUN_FIELD_NUMBER: _ClassVar[int]
    EVALUATIONS_FIELD_NUMBER: _ClassVar[int]
    SERVED_ALIAS_FIELD_NUMBER: _ClassVar[int]
    SHADOW_FIELD_NUMBER: _ClassVar[int]
    model_version: ModelVersion
    prediction_id: str
    predicted_at: _timestamp_pb2.Timestamp
    audit_events: _containers.RepeatedCompositeFieldContainer[AuditEvent]
    run: Run
    evaluations: _containers.RepeatedCompositeFieldContainer[Evaluation]
    served_alias: str
    shadow: bool
    def __init__(self, model_version: _Optional[_Union[ModelVersion, _Mapping]] = ..., prediction_id: _Optional[str] = ..., predicted_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., audit_events: _Optional[_Iterable[_Union[AuditEvent, _Mapping]]] = ..., run: _Optional[_Union[Run, _Mapping]] = ..., evaluations: _Optional[_Iterable[_Union[Evaluation, _Mapping]]] = ..., served_alias: _Optional[str] = ..., shadow: _Optional[bool] = ...) -> None: ...

class ListAuditEventsRequest(_message.Message):
    __slots__ = ("use_case", "model", "after_sequence", "page_size", "page_token")
    USE_CASE_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    AFTER_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    use_case: str
    model: _common_pb2.ModelRef
    after_sequence: int
    page_size: int
    page_token: str
    def __init__(self, use_case: _Optional[str] = ..., model: _Optional[_Union[_common_pb2.ModelRef, _Mapping]] = ..., after_sequence: _Optional[int] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListAuditEventsResponse(_message.Message):
    __slots__ = ("audit_events", "next_page_token")
    AUDIT_EVENTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    audit_events: _containers.RepeatedCompositeFieldContainer[AuditEvent]
    next_page_token: str
    def __init__(self, audit_events: _Optional[_Iterable[_Union[AuditEvent, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class VerifyAuditChainRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class VerifyAuditChainResponse(_message.Message):
    __slots__ = ("valid", "events_checked", "first_invalid_sequence", "message", "head_hash")
    VALID_FIELD_NUMBER: _ClassVar[int]
    EVENTS_CHECKED_FIELD_NUMBER: _ClassVar[int]
    FIRST_INVALID_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    HEAD_HASH_FIELD_NUMBER: _ClassVar[int]
    valid: bool
    events_checked: int
    first_invalid_sequence: int
    message: str
    head_hash: str
    def __init__(self, valid: _Optional[bool] = ..., events_checked: _Optional[int] = ..., first_invalid_sequence: _Optional[int] = ..., message: _Optional[str] = ..., head_hash: _Optional[str] = ...) -> None: ...

class ExportModelVersionRequest(_message.Message):
    __slots__ = ("ref", "destination_uri")
    REF_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_URI_FIELD_NUMBER: _ClassVar[int]
    ref: _common_pb2.ModelRef
    destination_uri: str
    def __init__(self, ref: _Optional[_Union[_common_pb2.ModelRef, _Mapping]] = ..., destination_uri: _Optional[str] = ...) -> None: ...

class ExportModelVersionResponse(_message.Message):
    __slots__ = ("uri", "sha256", "model_version", "triton_model_name", "repository")
    URI_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    TRITON_MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    uri: str
    sha256: str
    model_version: ModelVersion
    triton_model_name: str
    repository: str
    def __init__(self, uri: _Optional[str] = ..., sha256: _Optional[str] = ..., model_version: _Optional[_Union[ModelVersion, _Mapping]] = ..., triton_model_name: _Optional[str] = ..., repository: _Optional[str] = ...) -> None: ...

class DeleteAliasRequest(_message.Message):
    __slots__ = ("use_case", "model_name", "alias", "reason", "expected_version")
    USE_CASE_FIELD_NUMBER: _ClassVar[int]
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    use_case: str
    model_name: str
    alias: str
    reason: str
    expected_version: int
    def __init__(self, use_case: _Optional[str] = ..., model_name: _Optional[str] = ..., alias: _Optional[str] = ..., reason: _Optional[str] = ..., expected_version: _Optional[int] = ...) -> None: ...

class DeleteAliasResponse(_message.Message):
    __slots__ = ("previous_version", "audit_event_id")
    PREVIOUS_VERSION_FIELD_NUMBER: _ClassVar[int]
    AUDIT_EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    previous_version: int
    audit_event_id: str
    def __init__(self, previous_version: _Optional[int] = ..., audit_event_id: _Optional[str] = ...) -> None: ...

class UploadArtifactRequest(_message.Message):
    __slots__ = ("chunk", "expected_sha256", "use_case")
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_SHA256_FIELD_NUMBER: _ClassVar[int]
    USE_CASE_FIELD_NUMBER: _ClassVar[int]
    chunk: bytes
    expected_sha256: str
    use_case: str
    def __init__(self, chunk: _Optional[bytes] = ..., expected_sha256: _Optional[str] = ..., use_case: _Optional[str] = ...) -> None: ...

class UploadArtifactResponse(_message.Message):
    __slots__ = ("sha256", "size_bytes", "uri")
    SHA256_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    URI_FIELD_NUMBER: _ClassVar[int]
    sha256: str
    size_bytes: int
    uri: str
    def __init__(self, sha256: _Optional[str] = ..., size_bytes: _Optional[int] = ..., uri: _Optional[str] = ...) -> None: ...

class DownloadArtifactRequest(_message.Message):
    __slots__ = ("sha256",)
    SHA256_FIELD_NUMBER: _ClassVar[int]
    sha256: str
    def __init__(self, sha256: _Optional[str] = ...) -> None: ...

class DownloadArtifactResponse(_message.Message):
    __slots__ = ("chunk", "size_bytes")
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    chunk: bytes
    size_bytes: int
    def __init__(self, chunk: _Optional[bytes] = ..., size_bytes: _Optional[int] = ...) -> None: ...

class GetServingBundleRequest(_message.Message):
    __slots__ = ("ref", "instance_kind")
    REF_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_KIND_FIELD_NUMBER: _ClassVar[int]
    ref: _common_pb2.ModelRef
    instance_kind: str
    def __init__(self, ref: _Optional[_Union[_common_pb2.ModelRef, _Mapping]] = ..., instance_kind: _Optional[str] = ...) -> None: ...

class ServingFile(_message.Message):
    __slots__ = ("path", "sha256", "size_bytes")
    PATH_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    path: str
    sha256: str
    size_bytes: int
    def __init__(self, path: _Optional[str] = ..., sha256: _Optional[str] = ..., size_bytes: _Optional[int] = ...) -> None: ...

class GetServingBundleResponse(_message.Message):
    __slots__ = ("ref", "triton_model_name", "config_json", "files")
    REF_FIELD_NUMBER: _ClassVar[int]
    TRITON_MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    CONFIG_JSON_FIELD_NUMBER: _ClassVar[int]
    FILES_FIELD_NUMBER: _ClassVar[int]
    ref: _common_pb2.ModelRef
    triton_model_name: str
    config_json: str
    files: _containers.RepeatedCompositeFieldContainer[ServingFile]
    def __init__(self, ref: _Optional[_Union[_common_pb2.ModelRef, _Mapping]] = ..., triton_model_name: _Optional[str] = ..., config_json: _Optional[str] = ..., files: _Optional[_Iterable[_Union[ServingFile, _Mapping]]] = ...) -> None: ...

class GetReferenceStatsRequest(_message.Message):
    __slots__ = ("ref", "alias")
    REF_FIELD_NUMBER: _ClassVar[int]
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    ref: _common_pb2.ModelRef
    alias: str
    def __init__(self, ref: _Optional[_Union[_common_pb2.ModelRef, _Mapping]] = ..., alias: _Optional[str] = ...) -> None: ...

class GetReferenceStatsResponse(_message.Message):
    __slots__ = ("ref", "sha256", "profile_json")
    REF_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    PROFILE_JSON_FIELD_NUMBER: _ClassVar[int]
    ref: _common_pb2.ModelRef
    sha256: str
    profile_json: str
    def __init__(self, ref: _Optional[_Union[_common_pb2.ModelRef, _Mapping]] = ..., sha256: _Optional[str] = ..., profile_json: _Optional[str] = ...) -> None: ...

class CreateRunRequest(_message.Message):
    __slots__ = ("run_id", "use_case", "model_name", "training_request_id", "drift_report_id", "params", "environment", "code_version", "datasets", "features", "seed")
    class ParamsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class EnvironmentEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    USE_CASE_FIELD_NUMBER: _ClassVar[int]
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    TRAINING_REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    DRIFT_REPORT_ID_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_FIELD_NUMBER: _ClassVar[int]
    CODE_VERSION_FIELD_NUMBER: _ClassVar[int]
    DATASETS_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    use_case: str
    model_name: str
    training_request_id: str
    drift_report_id: str
    params: _containers.ScalarMap[str, str]
    environment: _containers.ScalarMap[str, str]
    code_version: str
    datasets: _containers.RepeatedCompositeFieldContainer[_common_pb2.DatasetRef]
    features: _containers.RepeatedCompositeFieldContainer[_common_pb2.FeatureRef]
    seed: int
    def __init__(self, run_id: _Optional[str] = ..., use_case: _Optional[str] = ..., model_name: _Optional[str] = ..., training_request_id: _Optional[str] = ..., drift_report_id: _Optional[str] = ..., params: _Optional[_Mapping[str, str]] = ..., environment: _Optional[_Mapping[str, str]] = ..., code_version: _Optional[str] = ..., datasets: _Optional[_Iterable[_Union[_common_pb2.DatasetRef, _Mapping]]] = ..., features: _Optional[_Iterable[_Union[_common_pb2.FeatureRef, _Mapping]]] = ..., seed: _Optional[int] = ...) -> None: ...

class CreateRunResponse(_message.Message):
    __slots__ = ("run",)
    RUN_FIELD_NUMBER: _ClassVar[int]
    run: Run
    def __init__(self, run: _Optional[_Union[Run, _Mapping]] = ...) -> None: ...

class LogRunMetricsRequest(_message.Message):
    __slots__ = ("run_id", "metrics")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    metrics: _containers.RepeatedCompositeFieldContainer[_common_pb2.Metric]
    def __init__(self, run_id: _Optional[str] = ..., metrics: _Optional[_Iterable[_Union[_common_pb2.Metric, _Mapping]]] = ...) -> None: ...

class LogRunMetricsResponse(_message.Message):
    __slots__ = ("accepted",)
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    accepted: int
    def __init__(self, accepted: _Optional[int] = ...) -> None: ...

class FinishRunRequest(_message.Message):
    __slots__ = ("run_id", "status", "metrics", "error", "datasets", "features", "duration_s")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    DATASETS_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    DURATION_S_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    status: RunStatus
    metrics: _containers.RepeatedCompositeFieldContainer[_common_pb2.Metric]
    error: str
    datasets: _containers.RepeatedCompositeFieldContainer[_common_pb2.DatasetRef]
    features: _containers.RepeatedCompositeFieldContainer[_common_pb2.FeatureRef]
    duration_s: float
    def __init__(self, run_id: _Optional[str] = ..., status: _Optional[_Union[RunStatus, str]] = ..., metrics: _Optional[_Iterable[_Union[_common_pb2.Metric, _Mapping]]] = ..., error: _Optional[str] = ..., datasets: _Optional[_Iterable[_Union[_common_pb2.DatasetRef, _Mapping]]] = ..., features: _Optional[_Iterable[_Union[_common_pb2.FeatureRef, _Mapping]]] = ..., duration_s: _Optional[float] = ...) -> None: ...

class FinishRunResponse(_message.Message):
    __slots__ = ("run",)
    RUN_FIELD_NUMBER: _ClassVar[int]
    run: Run
    def __init__(self, run: _Optional[_Union[Run, _Mapping]] = ...) -> None: ...

class GetRunRequest(_message.Message):
    __slots__ = ("run_id",)
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    def __init__(self, run_id: _Optional[str] = ...) -> None: ...

class GetRunResponse(_message.Message):
    __slots__ = ("run",)
    RUN_FIELD_NUMBER: _ClassVar[int]
    run: Run
    def __init__(self, run: _Optional[_Union[Run, _Mapping]] = ...) -> None: ...

class RecordEvaluationRequest(_message.Message):
    __slots__ = ("evaluation",)
    EVALUATION_FIELD_NUMBER: _ClassVar[int]
    evaluation: _events_pb2.ModelEvaluated
    def __init__(self, evaluation: _Optional[_Union[_events_pb2.ModelEvaluated, _Mapping]] = ...) -> None: ...

class RecordEvaluationResponse(_message.Message):
    __slots__ = ("model_version", "promoted", "recorded")
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    PROMOTED_FIELD_NUMBER: _ClassVar[int]
    RECORDED_FIELD_NUMBER: _ClassVar[int]
    model_version: ModelVersion
    promoted: bool
    recorded: bool
    def __init__(self, model_version: _Optional[_Union[ModelVersion, _Mapping]] = ..., promoted: _Optional[bool] = ..., recorded: _Optional[bool] = ...) -> None: ...

class GetPredictionRequest(_message.Message):
    __slots__ = ("prediction_id", "use_case")
    PREDICTION_ID_FIELD_NUMBER: _ClassVar[int]
    USE_CASE_FIELD_NUMBER: _ClassVar[int]
    prediction_id: str
    use_case: str
    def __init__(self, prediction_id: _Optional[str] = ..., use_case: _Optional[str] = ...) -> None: ...

class GetPredictionResponse(_message.Message):
    __slots__ = ("prediction_id", "model", "entity_id", "predicted_at", "alias")
    PREDICTION_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    ENTITY_ID_FIELD_NUMBER: _ClassVar[int]
    PREDICTED_AT_FIELD_NUMBER: _ClassVar[int]
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    prediction_id: str
    model: _common_pb2.ModelRef
    entity_id: str
    predicted_at: _timestamp_pb2.Timestamp
    alias: str
    def __init__(self, prediction_id: _Optional[str] = ..., model: _Optional[_Union[_common_pb2.ModelRef, _Mapping]] = ..., entity_id: _Optional[str] = ..., predicted_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., alias: _Optional[str] = ...) -> None: ...

class UseCaseEntry(_message.Message):
    __slots__ = ("use_case", "version", "state", "spec_yaml", "spec_sha256", "created_at", "created_by", "updated_at", "updated_by")
    USE_CASE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    SPEC_YAML_FIELD_NUMBER: _ClassVar[int]
    SPEC_SHA256_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    CREATED_BY_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_BY_FIELD_NUMBER: _ClassVar[int]
    use_case: str
    version: int
    state: _events_pb2_1.UseCaseState
    spec_yaml: str
    spec_sha256: str
    created_at: _timestamp_pb2.Timestamp
    created_by: _common_pb2.Actor
    updated_at: _timestamp_pb2.Timestamp
    updated_by: _common_pb2.Actor
    def __init__(self, use_case: _Optional[str] = ..., version: _Optional[int] = ..., state: _Optional[_Union[_events_pb2_1.UseCaseState, str]] = ..., spec_yaml: _Optional[str] = ..., spec_sha256: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., created_by: _Optional[_Union[_common_pb2.Actor, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_by: _Optional[_Union[_common_pb2.Actor, _Mapping]] = ...) -> None: ...

class UseCaseFieldChange(_message.Message):
    __slots__ = ("field", "needs_new_model")
    FIELD_FIELD_NUMBER: _ClassVar[int]
    NEEDS_NEW_MODEL_FIELD_NUMBER: _ClassVar[int]
    field: str
    needs_new_model: bool
    def __init__(self, field: _Optional[str] = ..., needs_new_model: _Optional[bool] = ...) -> None: ...

class ApplyUseCaseRequest(_message.Message):
    __slots__ = ("use_case", "spec_yaml", "reason", "dry_run")
    USE_CASE_FIELD_NUMBER: _ClassVar[int]
    SPEC_YAML_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    use_case: str
    spec_yaml: str
    reason: str
    dry_run: bool
    def __init__(self, use_case: _Optional[str] = ..., spec_yaml: _Optional[str] = ..., reason: _Optional[str] = ..., dry_run: _Optional[bool] = ...) -> None: ...

class ApplyUseCaseResponse(_message.Message):
    __slots__ = ("use_case", "outcome", "changes", "audit_event_id")
    USE_CASE_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    CHANGES_FIELD_NUMBER: _ClassVar[int]
    AUDIT_EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    use_case: UseCaseEntry
    outcome: UseCaseApplyOutcome
    changes: _containers.RepeatedCompositeFieldContainer[UseCaseFieldChange]
    audit_event_id: str
    def __init__(self, use_case: _Optional[_Union[UseCaseEntry, _Mapping]] = ..., outcome: _Optional[_Union[UseCaseApplyOutcome, str]] = ..., changes: _Optional[_Iterable[_Union[UseCaseFieldChange, _Mapping]]] = ..., audit_event_id: _Optional[str] = ...) -> None: ...

class ListUseCasesRequest(_message.Message):
    __slots__ = ("include_retired",)
    INCLUDE_RETIRED_FIELD_NUMBER: _ClassVar[int]
    include_retired: bool
    def __init__(self, include_retired: _Optional[bool] = ...) -> None: ...

class ListUseCasesResponse(_message.Message):
    __slots__ = ("use_cases",)
    USE_CASES_FIELD_NUMBER: _ClassVar[int]
    use_cases: _containers.RepeatedCompositeFieldContainer[UseCaseEntry]
    def __init__(self, use_cases: _Optional[_Iterable[_Union[UseCaseEntry, _Mapping]]] = ...) -> None: ...

class GetUseCaseRequest(_message.Message):
    __slots__ = ("use_case", "version")
    USE_CASE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    use_case: str
    version: int
    def __init__(self, use_case: _Optional[str] = ..., version: _Optional[int] = ...) -> None: ...

class GetUseCaseResponse(_message.Message):
    __slots__ = ("use_case",)
    USE_CASE_FIELD_NUMBER: _ClassVar[int]
    use_case: UseCaseEntry
    def __init__(self, use_case: _Optional[_Union[UseCaseEntry, _Mapping]] = ...) -> None: ...

class RetireUseCaseRequest(_message.Message):
    __slots__ = ("use_case", "reason")
    USE_CASE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    use_case: str
    reason: str
    def __init__(self, use_case: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class RetireUseCaseResponse(_message.Message):
    __slots__ = ("use_case", "audit_event_id")
    USE_CASE_FIELD_NUMBER: _ClassVar[int]
    AUDIT_EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    use_case: UseCaseEntry
    audit_event_id: str
    def __init__(self, use_case: _Optional[_Union[UseCaseEntry, _Mapping]] = ..., audit_event_id: _Optional[str] = ...) -> None: ...
