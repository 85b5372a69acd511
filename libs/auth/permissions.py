"""The one permission table: every gRPC method → a permission, every role → its permissions.

Reading a decision:

1. ``METHODS`` gives the method's :class:`Rule`: its permission and where its use
   case comes from. A method missing from the table is denied to everyone, admin
   included (so a new RPC is closed until someone decides who may call it).
2. The caller needs a role that grants the permission *in the request's use case*:
   a role granted for that use case, or for "*" (all use cases). ``admin`` grants
   every permission, so an admin for "*" may call every method in the table.

Where the use case comes from (``Rule.use_case``):

- a field path of the request (``"use_case"``, ``"model.use_case"``...). An empty
  value there means "every use case" (list filters) or "none given", so it needs a
  role granted for "*".
- ``GLOBAL``: the method concerns no single use case (e.g. verifying the whole audit
  chain): it needs a role granted for "*".
- ``RESOURCE``: the request names a resource by id only (a job, a report); its use
  case is known once the servicer has loaded it. The call is admitted when the caller
  holds the permission in some use case; the servicer must then call
  ``libs.auth.authorize_use_case(resource.use_case)`` before answering. The
  interceptor fails the call closed (PERMISSION_DENIED) when it did not, unless the
  permission was granted for "*".

``Rule.when_empty`` applies the same choice to a path whose value is empty
(``GetLineage`` asked by prediction id). In a client stream every message is
checked; a later message with no use case continues the stream's first one (an
upload names its use case in its first chunk only). The table is plain data so a
test walks it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

ALL = "*"


class Role(StrEnum):
    PRODUCER = "producer"  # business systems that push records
    ML_ENGINEER = "ml-engineer"  # trains, evaluates, registers, inspects
    APPROVER = "approver"  # approves, promotes and rolls back models
    APP = "app"  # business applications asking for predictions
    AUDITOR = "auditor"  # reads everything that explains a decision
    ADMIN = "admin"  # everything
    # One role a service, held by that service's principal only (subject ``svc-<name>``,
    # ``libs.auth.dev.DevAuth.mint_service``): what its own clients call, nothing more.
    SVC_INGESTION = "svc-ingestion"
    SVC_FEATURESTORE = "svc-featurestore"
    SVC_TRAINER = "svc-trainer"
    SVC_EVALUATOR = "svc-evaluator"
    SVC_REGISTRY = "svc-registry"
    SVC_GATEWAY = "svc-gateway"
    SVC_MONITOR = "svc-monitor"


class Permission(StrEnum):
    RECORDS_WRITE = "records.write"
    DATASETS_READ = "datasets.read"
    FEATURES_READ = "features.read"
    TRAINING_SETS_READ = "training_sets.read"
    TRAINING_SUBMIT = "training.submit"
    TRAINING_READ = "training.read"
    EVALUATION_RUN = "evaluation.run"
    EVALUATION_READ = "evaluation.read"
    EVALUATION_RECORD = "evaluation.record"
    RUNS_WRITE = "runs.write"
    MODELS_REGISTER = "models.register"
    MODELS_READ = "models.read"
    # A version's reference statistics only (what drift is measured against), not its artifact.
    REFERENCES_READ = "references.read"
    MODELS_PROMOTE = "models.promote"
    MODELS_APPROVE = "models.approve"
    MODELS_ROLLBACK = "models.rollback"
    MODELS_EXPORT = "models.export"
    LINEAGE_READ = "lineage.read"
    AUDIT_READ = "audit.read"
    PREDICTIONS_REQUEST = "predictions.request"
    FEEDBACK_WRITE = "feedback.write"
    MONITORING_READ = "monitoring.read"
    # The use-case catalogue: read specs, onboard or change one, retire one.
    USECASES_READ = "usecases.read"
    USECASES_WRITE = "usecases.write"
    USECASES_RETIRE = "usecases.retire"


class Scope(StrEnum):
    GLOBAL = "global"
    RESOURCE = "resource"


@dataclass(frozen=True)
class Rule:
    """How one method is authorised (see the module docstring)."""

    permission: Permission
    # A dotted field path of the request, or a Scope when the request has no use case.
    use_case: str | Scope = "use_case"
    # What an empty value at the path means.
    when_empty: Scope = Scope.GLOBAL


P = Permission
_ING = "/aifactory.ingestion.v1.IngestionService/"
_FS = "/aifactory.featurestore.v1.FeatureStoreService/"
_TR = "/aifactory.trainer.v1.TrainerService/"
_EV = "/aifactory.evaluator.v1.EvaluatorService/"
_REG = "/aifactory.registry.v1.RegistryService/"
_GW = "/aifactory.gateway.v1.GatewayService/"
_MON = "/aifactory.monitor.v1.MonitorService/"

METHODS: Mapping[str, Rule] = {
    _ING + "Ingest": Rule(P.RECORDS_WRITE),
    _ING + "IngestStream": Rule(P.RECORDS_WRITE),
    _ING + "GetDataset": Rule(P.DATASETS_READ),
    _FS + "GetOnlineFeatures": Rule(P.FEATURES_READ),
    _FS + "GetTrainingSet": Rule(P.TRAINING_SETS_READ),
    _FS + "StreamTrainingSet": Rule(P.TRAINING_SETS_READ),
    _TR + "SubmitTraining": Rule(P.TRAINING_SUBMIT),
    _TR + "GetTrainingJob": Rule(P.TRAINING_READ, Scope.RESOURCE),
    _TR + "ListTrainingJobs": Rule(P.TRAINING_READ),
    _EV + "Evaluate": Rule(P.EVALUATION_RUN, "model.use_case"),
    _EV + "GetEvaluationReport": Rule(P.EVALUATION_READ, Scope.RESOURCE),
    _REG + "RegisterModelVersion": Rule(P.MODELS_REGISTER),
    _REG + "GetModelVersion": Rule(P.MODELS_READ, "ref.use_case"),
    _REG + "ListModelVersions": Rule(P.MODELS_READ),
    _REG + "SetAlias": Rule(P.MODELS_PROMOTE),
    _REG + "GetAlias": Rule(P.MODELS_READ),
    _REG + "ApproveModelVersion": Rule(P.MODELS_APPROVE, "ref.use_case"),
    _REG + "Rollback": Rule(P.MODELS_ROLLBACK),
    _REG + "GetLineage": Rule(P.LINEAGE_READ, "model.use_case", when_empty=Scope.RESOURCE),
    _REG + "GetPrediction": Rule(P.LINEAGE_READ, Scope.RESOURCE),
    _REG + "ListAuditEvents": Rule(P.AUDIT_READ),
    _REG + "VerifyAuditChain": Rule(P.AUDIT_READ, Scope.GLOBAL),
    _REG + "ExportModelVersion": Rule(P.MODELS_EXPORT, "ref.use_case"),
    _REG + "DeleteAlias": Rule(P.MODELS_PROMOTE),
    # The upload's first message names its use case; a download names only a digest
    # (content-addressed, possibly shared across use cases): "*" grants only.
    _REG + "UploadArtifact": Rule(P.MODELS_REGISTER),
    _REG + "DownloadArtifact": Rule(P.MODELS_READ, Scope.GLOBAL),
    _REG + "GetServingBundle": Rule(P.MODELS_READ, "ref.use_case"),
    _REG + "GetReferenceStats": Rule(P.REFERENCES_READ, "ref.use_case"),
    _REG + "CreateRun": Rule(P.RUNS_WRITE),
    _REG + "LogRunMetrics": Rule(P.RUNS_WRITE, Scope.RESOURCE),
    _REG + "FinishRun": Rule(P.RUNS_WRITE, Scope.RESOURCE),
    _REG + "GetRun": Rule(P.TRAINING_READ, Scope.RESOURCE),
    _REG + "RecordEvaluation": Rule(P.EVALUATION_RECORD, "evaluation.model.use_case"),
    # The catalogue: applying a spec is authorised in the use case it names (a new one
    # too: a role granted for "fraud" may onboard "fraud"); a listing shows the use cases
    # the caller may read.
    _REG + "ApplyUseCase": Rule(P.USECASES_WRITE),
    _REG + "ListUseCases": Rule(P.USECASES_READ, Scope.RESOURCE),
    _REG + "GetUseCase": Rule(P.USECASES_READ),
    _REG + "RetireUseCase": Rule(P.USECASES_RETIRE),
    _GW + "Predict": Rule(P.PREDICTIONS_REQUEST),
    _GW + "PredictBatch": Rule(P.PREDICTIONS_REQUEST),
    _GW + "RecordFeedback": Rule(P.FEEDBACK_WRITE),
    _MON + "ListDriftReports": Rule(P.MONITORING_READ),
    _MON + "GetDriftReport": Rule(P.MONITORING_READ, Scope.RESOURCE),
    _MON + "ListAlerts": Rule(P.MONITORING_READ),
}

_READ_MODELS = {
    P.MODELS_READ,
    P.REFERENCES_READ,
    P.EVALUATION_READ,
    P.LINEAGE_READ,
    P.MONITORING_READ,
    P.USECASES_READ,
}

ROLES: Mapping[Role, frozenset[Permission]] = {
    Role.PRODUCER: frozenset({P.RECORDS_WRITE}),
    Role.APP: frozenset({P.PREDICTIONS_REQUEST, P.FEEDBACK_WRITE}),
    Role.ML_ENGINEER: frozenset(
        _READ_MODELS
        | {
            P.DATASETS_READ,
            P.FEATURES_READ,
            P.TRAINING_SETS_READ,
            P.TRAINING_SUBMIT,
            P.TRAINING_READ,
            P.EVALUATION_RUN,
            P.MODELS_REGISTER,
            P.MODELS_EXPORT,
            P.RUNS_WRITE,
            P.USECASES_WRITE,
        }
    ),
    # Decides on models; sees the evidence, does not train or serve.
    Role.APPROVER: frozenset(
        _READ_MODELS
        | {P.TRAINING_READ, P.MODELS_APPROVE, P.MODELS_PROMOTE, P.MODELS_ROLLBACK, P.USECASES_RETIRE}
    ),
    # Reads what explains a decision; no feature values or training sets (personal data).
    Role.AUDITOR: frozenset(_READ_MODELS | {P.DATASETS_READ, P.TRAINING_READ, P.AUDIT_READ}),
    Role.ADMIN: frozenset(Permission),
    # Services: each one the permissions of the RPCs its own clients call (grep the
    # services' stubs: libs/lifecycle/registry.py, libs/lifecycle/data.py, services/gateway/
    # {bundles,directory,features,feedback}.py, services/monitor/references.py), held for
    # "*" (a service serves every use case; DownloadArtifact needs a "*" grant).
    # Never approval, promotion or rollback: those are people's decisions or events.
    # The trainer streams training sets, tracks its runs and registers the versions (the
    # only principal besides people that may), and confirms a drift report with the monitor
    # before it retrains on one (libs/lifecycle/owners.py).
    Role.SVC_TRAINER: frozenset({P.TRAINING_SETS_READ, P.RUNS_WRITE, P.MODELS_REGISTER, P.MONITORING_READ}),
    # The evaluator streams the evaluation window, reads the candidate and the champion
    # (version, alias, artifact) and records its verdict: the only principal that may.
    Role.SVC_EVALUATOR: frozenset({P.TRAINING_SETS_READ, P.MODELS_READ, P.EVALUATION_RECORD}),
    # The gateway reads aliases, serving bundles and their artifacts, online features,
    # and predictions another replica served (to join feedback); predictions and feedback
    # themselves it writes to Kafka, not over RPC. It reads the audit log to confirm an
    # AliasChanged dated before the alias's current state (services/gateway/directory.py).
    Role.SVC_GATEWAY: frozenset({P.MODELS_READ, P.FEATURES_READ, P.LINEAGE_READ, P.AUDIT_READ}),
    # The monitor reads reference statistics; drift reports and retraining requests go to
    # Kafka.
    Role.SVC_MONITOR: frozenset({P.REFERENCES_READ}),
    # The registry confirms a verdict with the evaluator and a rollback request with the
    # monitor before it acts on the event (libs/lifecycle/owners.py): reads only.
    Role.SVC_REGISTRY: frozenset({P.EVALUATION_READ, P.MONITORING_READ}),
    # These call no other service: a principal each, and nothing granted.
    Role.SVC_INGESTION: frozenset(),
    Role.SVC_FEATURESTORE: frozenset(),
}


SERVICE_PREFIX = "svc-"


def service_role(service: str) -> Role:
    """Service ``service``'s own role (ValueError for an unknown service)."""
    return Role(SERVICE_PREFIX + service)


def permissions_of(roles: frozenset[str]) -> frozenset[Permission]:
    """Every permission the given role names grant (unknown names grant nothing)."""
    out: set[Permission] = set()
    for name in roles:
        try:
            out |= ROLES[Role(name)]
        except ValueError:
            continue
    return frozenset(out)
