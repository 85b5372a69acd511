"""Every gRPC method of every service, fuzzed on the running services (one process each).

For each method (found from proto/ like the permission walk, plus the gateway's Open
Inference Protocol), hypothesis generates requests: well-formed messages with extreme
values, random bytes, truncated encodings and wire-level traps, and for client-streaming
methods streams of them. Most calls carry an admin token so the fuzz reaches the
servicers; some carry none, a garbage one, an expired one or a role without rights.

Every answer must be a typed status (never INTERNAL or UNKNOWN), every call must end
within its deadline (DEADLINE_EXCEEDED is a hang), and afterwards every service is
alive, healthy and has counted no INTERNAL/UNKNOWN reply on its metrics endpoint.
Examples are derandomized: a run is reproducible; AIF_FUZZ_EXAMPLES raises the count.
"""

from __future__ import annotations

import os
import re
import socket
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import grpc
import pytest
from google.protobuf import message_factory
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from tritonclient.grpc import service_pb2 as oip_pb2

from aif.stack import SERVICES, Stack
from libs.auth import DevAuth
from libs.rpc.healthcheck import check
from libs.rpc.server import MAX_MESSAGE_BYTES
from tests.security.conftest import record
from tests.security.fuzzing import Body, MessageStrategies, bodies, huge, over_cap
from tests.security.grpc_targets import Method, services

pytestmark = [pytest.mark.e2e]

# Away from the other stacks (see aif.stack.Stack) and above the kernel's ephemeral range
# (32768-60999): an outgoing connection never holds them.
PORT_OFFSET = 11000
EXAMPLES = int(os.environ.get("AIF_FUZZ_EXAMPLES", "100"))
DEADLINE_S = 15.0
S = grpc.StatusCode
ALLOWED = {
    S.OK,
    S.INVALID_ARGUMENT,
    S.NOT_FOUND,
    S.FAILED_PRECONDITION,
    S.PERMISSION_DENIED,
    S.UNAUTHENTICATED,
    S.ALREADY_EXISTS,
    S.OUT_OF_RANGE,
    S.RESOURCE_EXHAUSTED,
    S.UNAVAILABLE,
    S.DATA_LOSS,
    S.ABORTED,
}
OIP_SERVICE = oip_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"]
# What the gateway does not serve on purpose (model control, shared memory, trace/log settings).
OIP_UNSERVED = {
    "RepositoryModelLoad",
    "RepositoryModelUnload",
    "SystemSharedMemoryStatus",
    "SystemSharedMemoryRegister",
    "SystemSharedMemoryUnregister",
    "CudaSharedMemoryStatus",
    "CudaSharedMemoryRegister",
    "CudaSharedMemoryUnregister",
    "TraceSetting",
    "LogSettings",
}
CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", 2 * MAX_MESSAGE_BYTES),
]


@dataclass(frozen=True)
class Target:
    service: str  # the stack's name of the process serving it
    method: Method
    oip: bool = False  # on the gateway's Open Inference Protocol port (no shared interceptor)

    @property
    def id(self) -> str:
        return (
            self.method.path.rsplit("/", 2)[-2].rsplit(".", 1)[-1] + "." + self.method.path.rsplit("/", 1)[-1]
        )

    @property
    def name(self) -> str:
        return self.method.path.rsplit("/", 1)[-1]


def targets() -> list[Target]:
    found = [Target(svc.full_name.split(".")[1], m) for svc in services() for m in svc.methods]
    for m in OIP_SERVICE.methods:
        found.append(
            Target(
                "gateway",
                Method(
                    f"/{OIP_SERVICE.full_name}/{m.name}",
                    message_factory.GetMessageClass(m.input_type),
                    m.client_streaming,
                    m.server_streaming,
                ),
                oip=True,
            )
        )
    return found


TARGETS = targets()


def topic_env(run: str) -> dict[str, str]:
    """Every topic every service reads or writes, renamed for this run (nothing shared is touched)."""
    import importlib

    env = {}
    for name in SERVICES:
        module = importlib.import_module(f"services.{name}.settings")
        cls = next(v for k, v in vars(module).items() if k.endswith("Settings") and k != "ServiceSettings")
        for field, info in cls.model_fields.items():
            if field.endswith("_topic") and isinstance(info.default, str) and info.default:
                env[f"AIF_{name.upper()}_{field.upper()}"] = f"{run}.{info.default}"
    env["AIF_INGESTION_RAW_TOPIC_PATTERN"] = f"{run}.aif.{{use_case}}.raw"
    return env


class Fuzz:
    """The running stack, one channel per server, and the tokens the calls carry."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        admin = stack.metadata("fuzz-admin")
        self.metadata: dict[str, tuple[tuple[str, str], ...]] = {
            "admin": admin,
            "auditor": stack.metadata("fuzz-auditor", {"*": ["auditor"]}),
            "expired": (
                (
                    "authorization",
                    "Bearer " + stack.auth.token_issuer().issue("fuzz-late", {"*": ["admin"]}, -3600),
                ),
            ),
            "garbage": (("authorization", "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0."),),
            "none": (),
        }
        self.channels: dict[str, grpc.Channel] = {}
        self.tried: Counter[str] = Counter()

    def channel(self, target: Target) -> grpc.Channel:
        port = SERVICES[target.service][0] + PORT_OFFSET + (10 if target.oip else 0)
        key = f"127.0.0.1:{port}"
        if key not in self.channels:
            self.channels[key] = grpc.insecure_channel(key, options=CHANNEL_OPTIONS)
        return self.channels[key]

    def call(
        self, target: Target, messages: Sequence[bytes], auth: str, timeout: float = DEADLINE_S
    ) -> tuple[grpc.StatusCode, str]:
        """One call with raw request bytes (identity serializers); its status and details."""
        m, channel = target.method, self.channel(target)
        kwargs = {"metadata": self.metadata[auth], "timeout": timeout}
        self.tried["messages"] += max(1, len(messages))
        self.tried["calls"] += 1
        try:
            if m.client_streaming and m.server_streaming:
                for _ in channel.stream_stream(m.path)(iter(messages), **kwargs):
                    pass
            elif m.client_streaming:
                channel.stream_unary(m.path)(iter(messages), **kwargs)
            elif m.server_streaming:
                for _ in channel.unary_stream(m.path)(messages[0], **kwargs):
                    pass
            else:
                channel.unary_unary(m.path)(messages[0], **kwargs)
        except grpc.RpcError as exc:
            return exc.code(), exc.details() or ""
        return S.OK, ""

    def close(self) -> None:
        for channel in self.channels.values():
            channel.close()


@pytest.fixture(scope="module")
def fuzz(kafka, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzz]:  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp("fuzz")
    run = f"fuzz-{uuid.uuid4().hex[:8]}"
    env = {
        "AIF_KAFKA_BOOTSTRAP": kafka.bootstrap_servers,
        **topic_env(run),
        # The fuzz needs the APIs, not the consumers; the topics above keep them apart anyway.
        "AIF_INGESTION_CONSUME": "false",
        "AIF_FEATURESTORE_STREAM_ENABLED": "false",
        "AIF_TRAINER_CONSUME": "false",
        "AIF_EVALUATOR_CONSUME": "false",
        "AIF_REGISTRY_CONSUME": "false",
        "AIF_MONITOR_CONSUME": "false",
        "AIF_REGISTRY_INSTANCE_ID": run,
        "AIF_INGESTION_INSTANCE_ID": run,
        "AIF_INGESTION_CONSUMER_GROUP": run,
    }
    env = {k: v for k, v in env.items() if _known_setting(k)}
    busy = [
        p
        for name in SERVICES
        for p in (SERVICES[name][0] + PORT_OFFSET, SERVICES[name][1] + PORT_OFFSET)
        if not _free(p)
    ]
    # A leftover process on these ports would answer the health checks for the new stack.
    assert not busy, f"ports {busy} are in use (a stack left over from an interrupted run?)"
    stack = Stack(
        root / "logs",
        port_offset=PORT_OFFSET,
        env=env,
        auth=DevAuth(root / "auth").ensure(),
        data_root=root / "data",
    )
    stack.start(timeout=150)
    fuzz = Fuzz(stack)
    try:
        yield fuzz
    finally:
        fuzz.close()
        stack.stop()
        record("fuzz_messages", fuzz.tried["messages"])
        record("fuzz_calls", fuzz.tried["calls"])


def _free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers do: TIME_WAIT is no owner
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _known_setting(name: str) -> bool:
    """Drop variables a service does not declare (a service refuses unknown AIF_<SERVICE>_* names)."""
    import importlib

    for service in SERVICES:
        prefix = f"AIF_{service.upper()}_"
        if name.startswith(prefix):
            module = importlib.import_module(f"services.{service}.settings")
            cls = next(
                v for k, v in vars(module).items() if k.endswith("Settings") and k != "ServiceSettings"
            )
            return name[len(prefix) :].lower() in cls.model_fields
    return True


def verdict(target: Target, auth: str, code: grpc.StatusCode) -> str | None:
    """Why this answer is wrong, or None."""
    if code == S.DEADLINE_EXCEEDED:
        return f"no answer within {DEADLINE_S:.0f}s (hang)"
    if target.oip:
        # The protocol has optional parts: the gateway refuses model control and shared memory,
        # and passes Triton's own UNIMPLEMENTED through (e.g. RepositoryIndex of a named repository).
        return None if code in ALLOWED | {S.UNIMPLEMENTED} else f"untyped status {code.name}"
    if auth in ("none", "garbage", "expired"):
        return (
            None if code == S.UNAUTHENTICATED else f"{auth} token answered {code.name}, not UNAUTHENTICATED"
        )
    return None if code in ALLOWED else f"untyped status {code.name}"


def _describe(bodies_: Sequence[Body]) -> str:
    return ", ".join(f"{b.kind}:{len(b.data)}B:{b.data[:48]!r}" for b in bodies_)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("target", TARGETS, ids=[t.id for t in TARGETS])
def test_fuzz_method(fuzz: Fuzz, target: Target) -> None:
    strategies = MessageStrategies()
    one = bodies(target.method.request, strategies)
    messages = st.lists(one, max_size=4) if target.method.client_streaming else one.map(lambda b: [b])
    auth = st.sampled_from(["admin"] * 7 + ["auditor", "none", "garbage", "expired"])
    failures: list[str] = []
    outcomes: Counter[str] = Counter()
    examples = EXAMPLES if not (target.oip and target.name in OIP_UNSERVED) else max(5, EXAMPLES // 5)

    @settings(
        max_examples=examples,
        derandomize=True,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(sent=messages, who=auth)
    def run(sent: list[Body], who: str) -> None:
        code, details = fuzz.call(target, [b.data for b in sent], who)
        outcomes[code.name] += 1
        wrong = verdict(target, who, code)
        if wrong:
            failures.append(f"{wrong} ({details[:120]!r}) for [{who}] {_describe(sent)}")

    run()
    print(f"{target.id}: {sum(outcomes.values())} calls {dict(outcomes)}")
    assert not failures, f"{target.method.path}: {len(failures)} bad answers:\n" + "\n".join(failures[:8])


@pytest.mark.timeout(300)
def test_largest_messages_within_the_cap_get_typed_answers(fuzz: Fuzz) -> None:
    """Each method once with its request at full size: long strings, 20k-item lists, wide maps."""
    failures = []
    for target in TARGETS:
        if target.oip and target.name in OIP_UNSERVED:
            continue
        data = huge(target.method.request).SerializeToString()
        code, details = fuzz.call(
            target, [data, data] if target.method.client_streaming else [data], "admin", timeout=60
        )
        if (wrong := verdict(target, "admin", code)) is not None:
            failures.append(f"{target.id} ({len(data) >> 20} MiB): {wrong} {details[:120]!r}")
    assert not failures, "\n".join(failures)


@pytest.mark.timeout(180)
def test_at_the_cap_a_typed_answer_and_past_it_resource_exhausted(fuzz: Fuzz) -> None:
    """On every server: a request 64 KiB under the 64 MiB cap (one huge string) gets a typed
    answer; one 1 KiB past it is refused with RESOURCE_EXHAUSTED."""
    seen = set()
    for target in TARGETS:
        server = (target.service, target.oip)
        if server in seen or target.method.client_streaming or target.name in OIP_UNSERVED:
            continue
        seen.add(server)
        under = over_cap(target.method.request, MAX_MESSAGE_BYTES - 65 * 1024)
        code, details = fuzz.call(target, [under], "admin", timeout=60)
        assert verdict(target, "admin", code) is None and code != S.RESOURCE_EXHAUSTED, (
            target.id,
            code,
            details,
        )
        code, _ = fuzz.call(target, [over_cap(target.method.request, MAX_MESSAGE_BYTES)], "admin", timeout=60)
        assert code == S.RESOURCE_EXHAUSTED, (target.id, code)
    assert len(seen) == len(SERVICES) + 1  # seven business APIs and the OIP server


_BAD_STATUS = re.compile(
    r'^aif_rpc_server_requests_total\{.*rpc_grpc_status_code="(INTERNAL|UNKNOWN)".*\} (\S+)$', re.M
)


@pytest.mark.timeout(120)
def test_every_service_is_alive_and_healthy_after_the_fuzz(fuzz: Fuzz) -> None:
    for name, svc in fuzz.stack.running.items():
        assert svc.process.poll() is None, f"{name} died during the fuzz; see {svc.log_path}"
        assert check(svc.target, timeout=5), f"{name} is not SERVING after the fuzz"
        with urllib.request.urlopen(f"http://127.0.0.1:{svc.metrics_port}/metrics", timeout=5) as reply:
            body = reply.read().decode()
        bad = [m.group(0) for m in _BAD_STATUS.finditer(body) if float(m.group(2)) > 0]
        assert not bad, f"{name} answered untyped statuses: {bad}"
        # And it still does its job: an empty request to its first method gets a typed answer.
        first = next(t for t in TARGETS if t.service == name and not t.oip)
        assert fuzz.call(first, [b""], "admin")[0] in ALLOWED, name
    print(
        f"fuzz: {fuzz.tried['messages']} messages in {fuzz.tried['calls']} calls over {len(TARGETS)} methods"
    )
