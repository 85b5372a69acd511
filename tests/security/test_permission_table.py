"""The whole permission table, walked with real gRPC calls through the shared interceptor.

For every method of every service, every role, and each way a role can be scoped,
one call: UNIMPLEMENTED (the generated base servicer answered, so authentication
and authorisation let it through) means allowed, PERMISSION_DENIED means denied.
The expectation is computed here from the table's data, not from the authorizer.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import grpc
import pytest
from google.protobuf.descriptor import FieldDescriptor

from aifactory.ingestion.v1 import ingestion_service_pb2 as ing
from aifactory.trainer.v1 import trainer_service_pb2 as tr
from aifactory.trainer.v1 import trainer_service_pb2_grpc as tr_grpc
from libs.auth import METHODS, ROLES, DevAuth, Role, Rule, Scope, TableAuthorizer, authorize_use_case
from libs.auth.permissions import SERVICE_PREFIX
from tests.security.conftest import ServeAll, jwt_security, record
from tests.security.grpc_targets import Method, all_methods, call, with_use_case

UC, OTHER = "loan_approval", "fraud_detection"
ALLOWED, DENIED = grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.PERMISSION_DENIED

# (token scope, use case put in the request): the cases a scoped role can meet.
CASES = [
    ("*", UC),  # role for every use case
    (UC, UC),  # role for this use case, request in it
    (UC, OTHER),  # role for this use case, request in another
    (UC, ""),  # role for this use case, request names none
]


def expected(rule: Rule, role: Role, token_scope: str, request_use_case: str) -> bool:
    if rule.permission not in ROLES[role]:
        return False
    scope = rule.use_case if isinstance(rule.use_case, Scope) else (request_use_case or rule.when_empty)
    if scope is Scope.GLOBAL:
        return token_scope == "*"
    if scope is Scope.RESOURCE:
        return True  # admitted; the servicer checks the loaded resource (tested below)
    return token_scope in ("*", scope)


def test_table_names_every_method_of_every_service_and_nothing_else() -> None:
    in_protos = {m.path for m in all_methods()}
    assert not in_protos - set(METHODS), "methods without a permission (denied to all)"
    assert not set(METHODS) - in_protos, "table entries for methods that do not exist"
    assert set(ROLES) == set(Role)


def test_every_use_case_path_is_a_string_field_of_the_request() -> None:
    by_path = {m.path: m for m in all_methods()}
    for path, rule in METHODS.items():
        if isinstance(rule.use_case, Scope):
            continue
        descriptor = by_path[path].request.DESCRIPTOR
        *parents, leaf = rule.use_case.split(".")
        for part in parents:
            descriptor = descriptor.fields_by_name[part].message_type
        assert descriptor.fields_by_name[leaf].type == FieldDescriptor.TYPE_STRING, (path, rule.use_case)


@pytest.fixture(scope="module")
def tokens(dev_auth: DevAuth) -> dict[tuple[Role, str], tuple[tuple[str, str], ...]]:
    # A service's role is held only by that service's principal (its subject is the role).
    return {
        (role, scope): dev_auth.metadata(
            role.value if role.value.startswith(SERVICE_PREFIX) else f"{role}@{scope}", {scope: [role]}
        )
        for role in Role
        for scope in ("*", UC)
    }


def _cases(method: Method) -> Iterator[tuple[str, str]]:
    rule = METHODS[method.path]
    for scope, use_case in CASES:
        if isinstance(rule.use_case, Scope) and use_case != UC:
            continue  # the request has no use case to vary
        yield scope, use_case


async def test_walk_every_method_every_role_every_scope(serve_all: ServeAll, tokens) -> None:  # type: ignore[no-untyped-def]
    channel = await serve_all()
    mismatches = []
    outcomes: Counter[str] = Counter()
    for method in all_methods():
        rule = METHODS[method.path]
        path = None if isinstance(rule.use_case, Scope) else rule.use_case
        for role in Role:
            for scope, use_case in _cases(method):
                want = ALLOWED if expected(rule, role, scope, use_case) else DENIED
                got = await call(channel, method, with_use_case(method, path, use_case), tokens[role, scope])
                outcomes[got.name] += 1
                if got != want:
                    mismatches.append(
                        f"{method.path} {role}@{scope} use_case={use_case!r}: {got.name}, "
                        f"table says {want.name}"
                    )
    total = sum(outcomes.values())
    record("permission_checks", total)
    print(
        f"permission walk: {total} calls over {len(all_methods())} methods x {len(Role)} roles "
        f"({dict(outcomes)})"
    )
    assert not mismatches, "\n".join(mismatches)
    assert outcomes[ALLOWED.name] and outcomes[DENIED.name]


async def test_admin_for_every_use_case_may_call_everything(serve_all: ServeAll, tokens) -> None:  # type: ignore[no-untyped-def]
    channel = await serve_all()
    for method in all_methods():
        assert await call(channel, method, None, tokens[Role.ADMIN, "*"]) == ALLOWED, method.path
    record("permission_checks", len(all_methods()))


async def test_a_method_missing_from_the_table_is_denied_even_to_admin(
    serve_all: ServeAll, dev_auth: DevAuth, tokens
) -> None:  # type: ignore[no-untyped-def]
    method = next(m for m in all_methods() if m.path.endswith("/ListTrainingJobs"))
    table = {k: v for k, v in METHODS.items() if k != method.path}
    channel = await serve_all(jwt_security(dev_auth, TableAuthorizer(methods=table)))
    assert await call(channel, method, None, tokens[Role.ADMIN, "*"]) == DENIED
    record("permission_checks")


class ResourceServicer(tr_grpc.TrainerServiceServicer):
    """GetTrainingJob loads a job of use case UC; ``check`` says whether it authorises it."""

    def __init__(self, check: bool) -> None:
        self.check = check

    async def GetTrainingJob(
        self, request: tr.GetTrainingJobRequest, context: grpc.aio.ServicerContext
    ) -> tr.GetTrainingJobResponse:
        job_use_case = request.job_id.split("/")[0]
        if self.check:
            authorize_use_case(job_use_case)
        return tr.GetTrainingJobResponse(job=tr.TrainingJob(job_id=request.job_id, use_case=job_use_case))


@pytest.mark.parametrize(
    ("check", "scope", "job", "want"),
    [
        (True, UC, f"{UC}/1", grpc.StatusCode.OK),
        (True, UC, f"{OTHER}/1", DENIED),  # the job is of another use case
        (False, UC, f"{UC}/1", DENIED),  # servicer forgot to check: fails closed
        (False, "*", f"{OTHER}/1", grpc.StatusCode.OK),  # a "*" grant needs no check
    ],
)
async def test_resource_methods_check_the_loaded_resource_or_fail_closed(
    serve_all: ServeAll, dev_auth: DevAuth, check: bool, scope: str, job: str, want: grpc.StatusCode
) -> None:
    channel = await serve_all(servicers={"aifactory.trainer.v1.TrainerService": ResourceServicer(check)})
    method = next(m for m in all_methods() if m.path.endswith("/GetTrainingJob"))
    metadata = dev_auth.metadata("eve", {scope: ["ml-engineer"]})
    assert await call(channel, method, tr.GetTrainingJobRequest(job_id=job), metadata) == want
    record("permission_checks")


async def test_every_message_of_a_request_stream_is_authorised(
    serve_all: ServeAll, dev_auth: DevAuth
) -> None:
    received: list[str] = []

    from aifactory.ingestion.v1 import ingestion_service_pb2_grpc as ing_grpc

    class Reading(ing_grpc.IngestionServiceServicer):
        async def IngestStream(self, request_iterator, context):  # type: ignore[no-untyped-def]
            async for message in request_iterator:
                received.append(message.use_case)
            return ing.IngestStreamResponse(received_count=len(received))

    channel = await serve_all(servicers={"aifactory.ingestion.v1.IngestionService": Reading()})
    stub = channel.stream_unary(
        "/aifactory.ingestion.v1.IngestionService/IngestStream",
        ing.IngestStreamRequest.SerializeToString,
        ing.IngestStreamResponse.FromString,
    )
    metadata = dev_auth.metadata("producer-1", {UC: ["producer"]})
    ok = await stub(iter([ing.IngestStreamRequest(use_case=UC)] * 2), metadata=metadata, timeout=5)
    assert ok.received_count == 2
    # A later message switching to a use case the producer may not write is refused.
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub(
            iter([ing.IngestStreamRequest(use_case=UC), ing.IngestStreamRequest(use_case=OTHER)]),
            metadata=metadata,
            timeout=5,
        )
    assert info.value.code() == DENIED
    assert received == [UC, UC, UC]
    record("permission_checks", 2)
