"""Training sets over the wire: the feature store's ``StreamTrainingSet`` (its real servicer
behind the shared gRPC server, JWT and the permission table) to ``GrpcTrainingData``.

The servicer's core is a stand-in that answers a training set already written as the
feature store writes it (its join is tested in test_featurestore.py): the frame crosses in
many batches and is rebuilt exactly, the header's description (quarantine counts,
datasets, features, content hash, an identifier, no path) crosses with it, auth is the
same as for every RPC, rows that do not match the header raise a typed error, and a
client that stops early leaves no read open on the server.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from aifactory.featurestore.v1 import featurestore_service_pb2 as fs_pb
from aifactory.featurestore.v1 import featurestore_service_pb2_grpc as fs_grpc
from libs.auth import DevAuth, JwtAuthenticator, RevocationList, TableAuthorizer, TokenVerifier
from libs.auth.tokens import REVOKED_FILE, load_public_key
from libs.errors import FailedPrecondition, NotFound, Unavailable
from libs.features import feature_refs
from libs.lifecycle.data import DatasetVersion, FeatureVersion, GrpcTrainingData
from libs.lifecycle.frames import Window
from libs.lifecycle.wire import TrainingSetMismatch, content_hash, parquet_batches, schema_message
from libs.rpc import RpcServer, ServerSecurity, insecure_channel
from libs.telemetry import setup_telemetry
from libs.usecase import UseCases, load_default
from services.featurestore import convert
from services.featurestore.servicer import FeatureStoreServicer
from services.featurestore.training import ROW_GROUP_ROWS, TrainingSet
from tests.training_sets import loan_frame

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]
UC = "loan_approval"
ROWS = 6_000
SERVICE = fs_pb.DESCRIPTOR.services_by_name["FeatureStoreService"].full_name
QUARANTINED = {"no_feature_row": 3, "entity_mismatch": 1, "ambiguous_event_time": 0}


def write_set(folder: Path, frame: pd.DataFrame, label: str = "label") -> TrainingSet:
    """``frame`` written as the feature store writes a training set."""
    uc = load_default()[UC]
    path = folder / "set.parquet"
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path, row_group_size=ROW_GROUP_ROWS)
    return TrainingSet(
        UC,
        path,
        len(frame),
        content_hash(frame),
        feature_refs(uc),
        [("raw-1", "file:///ingestion/raw-1"), ("raw-2", "file:///ingestion/raw-2")],
        label=label,
        quarantined=dict(QUARANTINED),
    )


def store_frame(n: int = ROWS) -> pd.DataFrame:
    """A loan training set with the store's column types (µs UTC times, the attribute as text),
    its label under another name than the contract's."""
    frame = loan_frame(n)
    for c in ("event_time", "label_time"):
        frame[c] = frame[c].astype("datetime64[us, UTC]")
    frame["gender"] = frame["gender"].astype("string")
    frame.loc[10, "salary"] = float("nan")
    return frame.rename(columns={"label": "approved"})


@dataclass
class StandInCore:
    """What the servicer needs of ``FeatureStoreCore``: the use cases and training sets."""

    training: TrainingSet
    usecases: UseCases = field(default_factory=load_default)
    requests: list[tuple[str, datetime, datetime]] = field(default_factory=list)

    def training_set(
        self, use_case: str, start: datetime, end: datetime, feature_names: Any = ()
    ) -> TrainingSet:
        self.usecases.require(use_case)
        self.requests.append((use_case, start, end))
        if start.year == 2001:
            raise Unavailable("offline files kept changing while being read")
        if start.year == 2002:
            raise FailedPrecondition("no labelled examples in the range")
        return self.training


@pytest.fixture(scope="module")
def dev_auth(tmp_path_factory: pytest.TempPathFactory) -> DevAuth:
    return DevAuth(tmp_path_factory.mktemp("auth")).ensure()


def jwt(auth: DevAuth) -> ServerSecurity:
    verifier = TokenVerifier(
        load_public_key(auth.public_key),
        issuer=auth.issuer,
        audience=auth.audience,
        revoked=RevocationList(auth.directory / REVOKED_FILE),
    )
    return ServerSecurity(JwtAuthenticator(verifier), TableAuthorizer())


Serve = Callable[..., Any]


@pytest.fixture
async def serve(dev_auth: DevAuth) -> AsyncIterator[Serve]:
    servers: list[RpcServer] = []

    async def start(servicer: Any, *, auth: bool = True) -> str:
        server = RpcServer(
            "127.0.0.1:0", setup_telemetry("test"), security=jwt(dev_auth) if auth else ServerSecurity()
        )
        server.add_service(fs_grpc.add_FeatureStoreServiceServicer_to_server, servicer, SERVICE)
        port = await server.start()
        servers.append(server)
        return f"127.0.0.1:{port}"

    yield start
    for server in servers:
        await server.stop()


def service_token(auth: DevAuth) -> str:
    return auth.issue("svc-trainer", {"*": ["svc-trainer"]})


async def test_a_multi_batch_set_crosses_exactly_with_its_description(
    tmp_path: Path, serve: Serve, dev_auth: DevAuth
) -> None:
    frame = store_frame()
    training = write_set(tmp_path, frame, label="approved")
    core = StandInCore(training)
    target = await serve(FeatureStoreServicer(core, batch_bytes=64 * 1024))  # type: ignore[arg-type]
    async with insecure_channel(target, token=service_token(dev_auth)) as channel:
        raw = [
            m
            async for m in fs_grpc.FeatureStoreServiceStub(channel).StreamTrainingSet(
                fs_pb.StreamTrainingSetRequest(use_case=UC), timeout=30
            )
        ]
        ts = await GrpcTrainingData(channel).get_training_set(UC, None)
        description = await fs_grpc.FeatureStoreServiceStub(channel).GetTrainingSet(
            fs_pb.GetTrainingSetRequest(use_case=UC), timeout=30
        )
    # One header, then many bounded batches.
    assert [m.WhichOneof("part") for m in raw[:2]] == ["header", "batch"]
    assert all(m.WhichOneof("part") == "batch" for m in raw[1:]) and len(raw) > 20
    assert max(len(m.batch.arrow_ipc) for m in raw[1:]) <= 3 << 20
    # The frame is the file's, row for row, the label under the contract's name.
    pd.testing.assert_frame_equal(ts.frame, frame.rename(columns={"approved": "label"}))
    assert ts.content_hash == training.content_hash
    assert ts.quarantined == QUARANTINED and ts.quarantined_total == 4
    assert ts.datasets == [
        DatasetVersion(UC, "raw-1", "file:///ingestion/raw-1"),
        DatasetVersion(UC, "raw-2", "file:///ingestion/raw-2"),
    ]
    assert ts.features[0] == FeatureVersion(UC, UC, "salary", training.features[0].version)
    assert len(ts.features) == len(training.features)
    # An identifier for lineage, never the store's path.
    assert ts.uri == f"featurestore://{UC}/training-sets/{training.content_hash}"
    assert str(tmp_path) not in ts.uri and str(tmp_path) not in str(raw[0])
    # GetTrainingSet still describes the set, without a path.
    assert description.uri == "" and description.format == ""
    assert (description.row_count, dict(description.quarantined)) == (ROWS, QUARANTINED)
    # None asks for everything: a range from 1970 to past now.
    assert core.requests[1][1] == datetime(1970, 1, 1, tzinfo=UTC)


async def test_auth_is_enforced_as_for_every_rpc(tmp_path: Path, serve: Serve, dev_auth: DevAuth) -> None:
    target = await serve(FeatureStoreServicer(StandInCore(write_set(tmp_path, store_frame(300)))))  # type: ignore[arg-type]
    request = fs_pb.StreamTrainingSetRequest(use_case=UC)
    refused = {
        "no token": (None, grpc.StatusCode.UNAUTHENTICATED),
        "forged": ("not-a-jwt", grpc.StatusCode.UNAUTHENTICATED),
        "app role": (dev_auth.issue("app", {"*": ["app"]}), grpc.StatusCode.PERMISSION_DENIED),
        "other use case": (
            dev_auth.issue("eng", {"image_segments": ["ml-engineer"]}),
            grpc.StatusCode.PERMISSION_DENIED,
        ),
    }
    for why, (token, code) in refused.items():
        async with insecure_channel(target, token=token) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                async for _ in fs_grpc.FeatureStoreServiceStub(channel).StreamTrainingSet(
                    request, timeout=10
                ):
                    pass
            assert err.value.code() == code, why
            # Through the port, a refusal is a typed error that is not retried.
            with pytest.raises(FailedPrecondition):
                await GrpcTrainingData(channel).get_training_set(UC, None)
    for token in (service_token(dev_auth), dev_auth.issue("eng", {UC: ["ml-engineer"]})):
        async with insecure_channel(target, token=token) as channel:
            assert len((await GrpcTrainingData(channel).get_training_set(UC, None)).frame) == 300


async def test_store_errors_are_typed(tmp_path: Path, serve: Serve) -> None:
    target = await serve(FeatureStoreServicer(StandInCore(write_set(tmp_path, store_frame(50)))), auth=False)  # type: ignore[arg-type]
    async with insecure_channel(target) as channel:
        data = GrpcTrainingData(channel)
        with pytest.raises(NotFound):
            await data.get_training_set("no_such_use_case", None)
        with pytest.raises(Unavailable):
            await data.get_training_set(
                UC, Window(datetime(2001, 1, 1, tzinfo=UTC), datetime(2001, 2, 1, tzinfo=UTC))
            )
        with pytest.raises(FailedPrecondition):
            await data.get_training_set(
                UC, Window(datetime(2002, 1, 1, tzinfo=UTC), datetime(2002, 2, 1, tzinfo=UTC))
            )


class Scripted(fs_grpc.FeatureStoreServiceServicer):
    """Streams whatever messages a test scripts (a store that gets it wrong)."""

    def __init__(self, messages: list[fs_pb.StreamTrainingSetResponse]) -> None:
        self.messages = messages

    async def StreamTrainingSet(
        self, request: fs_pb.StreamTrainingSetRequest, context: Any
    ) -> AsyncIterator[fs_pb.StreamTrainingSetResponse]:
        for m in self.messages:
            yield m


async def test_rows_that_do_not_match_the_header_raise_a_typed_error(tmp_path: Path, serve: Serve) -> None:
    uc = load_default()[UC]
    frame = store_frame(2_000)
    training = write_set(tmp_path, frame)
    schema = schema_message(pq.read_schema(training.path))
    batches = [convert.training_set_batch(m) for m in parquet_batches(training.path, target_bytes=32_000)]
    other = tmp_path / "other"
    other.mkdir()
    narrower = write_set(other, frame.drop(columns="gender"))
    foreign = [convert.training_set_batch(m) for m in parquet_batches(narrower.path, target_bytes=32_000)]
    tampered = pd.read_parquet(training.path)
    tampered.loc[5, "salary"] += 1
    (tmp_path / "t").mkdir()
    tampered_batches = [
        convert.training_set_batch(m)
        for m in parquet_batches(write_set(tmp_path / "t", tampered).path, target_bytes=32_000)
    ]

    def header(row_count: int = len(frame), digest: str = training.content_hash) -> Any:
        ts = TrainingSet(UC, training.path, row_count, digest, training.features, training.datasets)
        return convert.training_set_header(uc, ts, schema)

    scripts = {
        "rows missing": ([header(), *batches[:-1]], "announced 2000 rows, 1"),
        "rows too many": ([header(row_count=1_999), *batches], "announced 1999 rows"),
        "another schema": ([header(), *foreign], "is not the header's"),
        "a changed value": ([header(), *tampered_batches], "content hash"),
        "batch first": ([*batches[:1], header()], "unexpected batch"),
        "two headers": ([header(), header(), *batches], "unexpected header"),
        "no header": ([], "without a header"),
    }
    for why, (messages, match) in scripts.items():
        target = await serve(Scripted(messages), auth=False)
        async with insecure_channel(target) as channel:
            with pytest.raises(TrainingSetMismatch, match=match):
                await GrpcTrainingData(channel).get_training_set(UC, None)
            assert issubclass(TrainingSetMismatch, FailedPrecondition), why
    # The untouched script goes through.
    target = await serve(Scripted([header(), *batches]), auth=False)
    async with insecure_channel(target) as channel:
        got = await GrpcTrainingData(channel).get_training_set(UC, None)
    pd.testing.assert_frame_equal(got.frame, frame)


async def test_a_client_that_stops_early_closes_the_servers_read(
    tmp_path: Path, serve: Serve, monkeypatch: pytest.MonkeyPatch
) -> None:
    from services.featurestore import servicer as module

    closed: list[bool] = []
    close = module._Batches.close

    def counted(self: Any) -> None:
        closed.append(True)
        close(self)

    monkeypatch.setattr(module._Batches, "close", counted)
    core = StandInCore(write_set(tmp_path, store_frame(3_000)))
    target = await serve(FeatureStoreServicer(core, batch_bytes=16 * 1024), auth=False)  # type: ignore[arg-type]
    async with insecure_channel(target) as channel:
        call = fs_grpc.FeatureStoreServiceStub(channel).StreamTrainingSet(
            fs_pb.StreamTrainingSetRequest(use_case=UC)
        )
        async for _ in call:
            if call.cancel():
                break
        for _ in range(50):
            if closed:
                break
            await asyncio.sleep(0.05)
        assert closed, "the server kept the set's file open after the client went away"
        # The server serves the next stream as usual.
        assert len((await GrpcTrainingData(channel).get_training_set(UC, None)).frame) == 3_000
