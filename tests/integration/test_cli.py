"""``aif`` against a running factory: every command, through its ``--json`` output.

The seven services run as their own processes (aif.stack) on the real broker, with
Triton, on topics and consumer groups of this run only; ``aif`` reaches them through a
context of its own config file (addresses, a token file), as a user's would. In order:
status, onboarding (apply, list, show, schema), ingesting a CSV with bad rows (progress,
dead-letter summary), JSONL and parquet files, the dead letters (list, replay), a real
training (labels reported on the feedback topic), versions (list, show, approve, reject,
promote, roll back), a prediction and its lineage, drift reports, the audit log, tokens,
the errors (one line, exit code) and retiring.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from typer.testing import CliRunner

from aif import infra
from aif.cli.app import app
from aif.datagen import Example, LoanStream, to_json
from aif.stack import Stack
from aifactory.common.v1 import common_pb2
from aifactory.evaluator.v1 import events_pb2 as evaluator_events
from aifactory.featurestore.v1 import featurestore_service_pb2 as fs_pb
from aifactory.featurestore.v1 import featurestore_service_pb2_grpc as fs_grpc
from aifactory.gateway.v1 import events_pb2 as gateway_events
from aifactory.registry.v1 import registry_service_pb2 as reg_pb
from aifactory.registry.v1 import registry_service_pb2_grpc as reg_grpc
from libs.bus import EventPublisher, Outgoing, topics
from libs.usecase import parse_usecase
from tests.integration.test_usecase_onboarding import create_topics, isolated, spec_file, wait_for
from tests.unit.registry.helpers import reference_doc, torchscript_model

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

PORT_OFFSET = 13600  # see aif.stack for the offsets in use
ROOT = Path(__file__).resolve().parents[2]
RECORDS = 700


@pytest.fixture(scope="module")
def factory(
    kafka: infra.KafkaHandle, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Stack, str]]:
    run = f"cli{uuid.uuid4().hex[:8]}"
    triton = infra.ensure_triton()
    stack = Stack(
        tmp_path_factory.mktemp("logs"),
        port_offset=PORT_OFFSET,
        data_root=tmp_path_factory.mktemp("state"),
        env={
            "AIF_KAFKA_BOOTSTRAP": kafka.bootstrap_servers,
            "AIF_GATEWAY_TRITON_URL": triton.grpc_url,
            "AIF_GATEWAY_TRITON_CONTROL_KEY": triton.control_key,
            **isolated(run),
        },
    )
    names = {v for k, v in stack.env.items() if k.endswith("_TOPIC") and k != "AIF_USECASES_TOPIC"}
    asyncio.run(create_topics(kafka.bootstrap_servers, names))
    stack.start(timeout=180)
    try:
        yield stack, run
    finally:
        stack.stop()


class Aif:
    """Runs ``aif`` in this process (typer's CliRunner) with this run's config file."""

    def __init__(self, config: Path) -> None:
        self.runner = CliRunner()
        self.config = config
        unset: dict[str, str | None] = dict.fromkeys(
            ("AIF_TOKEN", "AIF_TOKEN_FILE", "AIF_CONTEXT", "AIF_REGISTRY_TARGET")
        )
        self.env = {"AIF_CONFIG": str(config), **unset}

    def __call__(self, *args: str, code: int | None = 0) -> Any:
        result = self.runner.invoke(app, list(args), env=self.env)
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        if code is not None:
            assert result.exit_code == code, (args, result.exit_code, result.stdout[-2000:], result.stderr)
        return result

    def json(self, *args: str, code: int | None = 0) -> Any:
        return json.loads(self(*args, "--json", code=code).stdout)


def _ts(value: datetime) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(value)
    return ts


async def report_outcomes(bootstrap: str, topic: str, use_case: str, examples: list[Example]) -> None:
    """The bank's systems report each application's outcome (the feedback topic)."""
    publisher = EventPublisher(bootstrap, producer="cli-test")
    await publisher.start()
    try:
        await publisher.publish_many(
            [
                Outgoing(
                    topic,
                    gateway_events.FeedbackRecorded(
                        feedback_id=f"fb-{ex.record_id}",
                        use_case=use_case,
                        entity_id=ex.entity_id,
                        record_id=ex.record_id,
                        event_time=_ts(ex.event_time),
                        outcome=common_pb2.Value(int64_value=int(ex.label)),
                        observed_at=_ts(ex.label_time),
                        recorded_at=_ts(datetime.now(UTC)),
                    ),
                    use_case=use_case,
                    key=ex.entity_id,
                    event_id=f"fb-{ex.record_id}",
                )
                for ex in examples
            ]
        )
    finally:
        await publisher.stop()


def register_passed(stack: Stack, name: str, report: str) -> int:
    """A version whose evaluation passed (the approval policy then waits for an approver)."""
    uc = parse_usecase((stack.log_dir / f"{name}.yaml").read_text())
    admin = stack.metadata("cli-test-admin")
    with grpc.insecure_channel(stack.target("registry")) as channel:
        registry = reg_grpc.RegistryServiceStub(channel)
        version = registry.RegisterModelVersion(
            reg_pb.RegisterModelVersionRequest(
                use_case=name,
                model_name=name,
                artifact_content=torchscript_model(uc),
                reference_profile_content=json.dumps(reference_doc(uc)).encode(),
            ),
            metadata=admin,
            timeout=60,
        ).model_version
        gate = evaluator_events.GateResult(
            gate="metric_floor", metric="auc", value=0.9, threshold=0.75, passed=True, comparator=">="
        )
        registry.RecordEvaluation(
            reg_pb.RecordEvaluationRequest(
                evaluation=evaluator_events.ModelEvaluated(
                    report_id=report, model=version.ref, passed=True, gates=[gate]
                )
            ),
            metadata=admin,
            timeout=30,
        )
    return int(version.ref.version)


def test_every_aif_command_against_a_running_factory(
    factory: tuple[Stack, str], kafka: infra.KafkaHandle, tmp_path: Path
) -> None:
    stack, run = factory
    name = f"cli_{run}"
    aif = Aif(tmp_path / "config.yaml")
    token_file = tmp_path / "admin.token"
    token_file.write_text(stack.auth.issue("cli-admin", {"*": ["admin", "approver"]}))
    aif(
        "context", "set", "test", "--use", "--token-file", str(token_file), "--kafka", kafka.bootstrap_servers,
        "--group-prefix", f"{run}-", "--dead-letter-topic", f"{run}.{topics.DEAD_LETTER}",
        "--gateway-oip", f"127.0.0.1:{50066 + PORT_OFFSET}",
        *(x for svc in ("ingestion", "featurestore", "trainer", "evaluator", "registry", "gateway", "monitor")
          for x in (f"--{svc}", stack.target(svc))),
    )  # fmt: skip

    # status: every service SERVING, an empty catalogue.
    status = aif.json("status")
    assert {s["service"]: s["status"] for s in status["services"]} == dict.fromkeys(stack.running, "SERVING")
    assert status["usecases"] == []

    # Onboarding: apply, list, show, schema (approval policy: versions wait for an approver).
    spec = spec_file(
        tmp_path, name, training={"min_rows": 100}, deployment={"promotion": "approval"}, model={"epochs": 5}
    )
    (stack.log_dir / f"{name}.yaml").write_text(spec.read_text())
    applied = aif.json("usecase", "apply", str(spec), "--reason", "cli test")
    assert applied[0]["outcome"] == "created" and applied[0]["use_case"]["version"] == "1"
    stack.wait_usecases([name], timeout=180)
    listed = aif.json("usecase", "list")
    assert [(e["use_case"], e["state"]) for e in listed] == [(name, "active")]
    assert aif.json("usecase", "show", name)["spec_sha256"]
    schema = json.loads(aif("usecase", "schema", name).stdout)
    assert schema["$id"] == f"aif:usecase:{name}:v1" and "salary" in schema["properties"]

    # ingest: a CSV with two bad rows (exit 1, the dead letters summed up by reason).
    start = datetime.now(UTC) - timedelta(seconds=RECORDS + 900)
    examples = list(itertools.islice(LoanStream(seed=5, start=start), RECORDS))
    rows = [{**json.loads(to_json(ex.record)), "record_id": ex.record_id} for ex in examples]
    columns = list(rows[0])
    csv_lines = [",".join(columns)] + [",".join(str(r.get(c, "")) for c in columns) for r in rows[:600]]
    bad = [
        {**rows[0], "record_id": f"bad-1-{run}", "salary": -5},
        {**rows[1], "record_id": f"bad-2-{run}", "age": ""},
    ]
    csv_lines += [",".join(str(r.get(c, "")) for c in columns) for r in bad]
    (tmp_path / "records.csv").write_text("\n".join(csv_lines) + "\n")
    ingested = aif.json("ingest", str(tmp_path / "records.csv"), "--use-case", name, "--batch", "200", code=1)
    assert (ingested["accepted"], ingested["rejected"]) == (600, 2), ingested
    assert ingested["dead_letters"] == {"salary: range": 1, "age: required": 1}
    assert {e["line"] for e in ingested["examples"]} == {601, 602} and ingested["dataset"]["version"]
    # The same file again: the same record ids, nothing new is accepted twice downstream.
    (tmp_path / "more.jsonl").write_text("\n".join(json.dumps(r) for r in rows[600:650]) + "\n")
    assert aif.json("ingest", str(tmp_path / "more.jsonl"), "-u", name)["accepted"] == 50
    pq.write_table(pa.Table.from_pylist(rows[650:]), tmp_path / "rest.parquet")
    assert aif.json("ingest", str(tmp_path / "rest.parquet"), "-u", name)["accepted"] == RECORDS - 650
    # Progress bar and summary for a person.
    human = aif("ingest", str(tmp_path / "more.jsonl"), "-u", name)
    assert "50 records: 50 accepted, 0 dead-lettered" in human.stdout

    # dlq: both refused records with their reasons; replaying one is refused again (the
    # data was not fixed), through ingestion's API.
    def dead_letters() -> list[dict[str, Any]] | None:
        found: list[dict[str, Any]] = aif.json("dlq", "list", "-u", name)
        return found if len(found) >= 2 else None

    letters = wait_for("the dead letters", dead_letters, timeout=60)
    assert len(letters) == 2 and {d["record_id"] for d in letters} == {f"bad-1-{run}", f"bad-2-{run}"}
    assert all(d["kind"] == "rejected_record" and d["source"] == "grpc" for d in letters)
    replayed = aif.json("dlq", "replay", letters[0]["id"], code=1)
    assert (
        replayed[0]["outcome"] == "rejected again"
        and replayed[0]["detail"].split(":")[0] in letters[0]["reasons"][0]
    )
    assert aif.json("dlq", "replay", "-u", name, "--dry-run")[0]["outcome"] == "would be ingested"

    # train: labels arrive on the feedback topic; the trainer builds its set from the
    # feature store, trains, registers (exit 0 once it succeeded).
    asyncio.run(report_outcomes(kafka.bootstrap_servers, f"{run}.{topics.FEEDBACK}", name, examples))
    admin = stack.metadata("cli-test-admin")
    with grpc.insecure_channel(stack.target("featurestore")) as channel:
        features = fs_grpc.FeatureStoreServiceStub(channel)

        def training_set_ready() -> bool:
            try:
                reply = features.GetTrainingSet(
                    fs_pb.GetTrainingSetRequest(use_case=name), metadata=admin, timeout=120
                )
            except grpc.RpcError as exc:
                if exc.code() == grpc.StatusCode.FAILED_PRECONDITION:  # type: ignore[attr-defined]
                    return False
                raise
            # Features and labels arrive on two topics: wait for (nearly) every example.
            return int(reply.row_count) >= RECORDS - 50

        wait_for("a complete training set", training_set_ready, timeout=180)
    job = aif.json("train", name, "--param", "epochs=3", "--wait", "--poll", "0.2", "--timeout", "300")
    assert job["state"] == "TRAINING_JOB_STATE_SUCCEEDED", job
    trained = int(job["model"]["version"])
    assert trained >= 1 and job["use_case"] == name

    # models: two more versions pass evaluation; approving promotes (approval policy).
    first = register_passed(stack, name, f"r1-{run}")
    second = register_passed(stack, name, f"r2-{run}")
    third = register_passed(stack, name, f"r3-{run}")
    versions = {v["ref"]["version"]: v for v in aif.json("models", "list", name)}
    assert {str(trained), str(first), str(second), str(third)} <= set(versions)
    assert versions[str(first)]["status"] == "pending_approval"
    approved = aif.json("models", "approve", name, str(first), "--comment", "looks good")
    assert (
        approved["model_version"]["status"] == "approved"
        and "champion" in approved["model_version"]["aliases"]
    )
    assert (
        aif.json("models", "approve", name, str(third), "--reject")["model_version"]["status"] == "rejected"
    )
    aif("models", "approve", name, str(second))
    shown = aif.json("models", "show", name, str(second))
    assert shown["aliases"] == ["champion"] and shown["status"] == "approved"
    rolled = aif.json("models", "rollback", name, "--reason", "cli test")
    assert (rolled["previous_version"], rolled["alias"]["version"]) == (str(second), str(first))
    # A rolled-back version is archived: promoting it is refused (exit 1, one line).
    archived = aif("models", "promote", name, str(second), code=1)
    assert archived.stderr.count("\n") == 1 and "FAILED_PRECONDITION" in archived.stderr
    promoted = aif.json("models", "promote", name, str(first), "--alias", "staging", "--reason", "cli test")
    assert (promoted["alias"]["alias"], promoted["alias"]["version"]) == ("staging", str(first))
    assert "staging" in aif.json("models", "show", name, str(first))["aliases"]

    # predict by entity id once the gateway serves the champion; its lineage, as a tree too.
    entity = examples[-1].entity_id

    def served() -> dict[str, Any] | None:
        result = aif("predict", name, "--entity", entity, "--json", code=None)
        return json.loads(result.stdout) if result.exit_code == 0 else None

    prediction = wait_for("the gateway to serve the champion", served, timeout=180)
    assert prediction["model"]["version"] == str(first)
    pid = prediction["prediction_id"]

    def indexed() -> dict[str, Any] | None:
        result = aif("lineage", pid, "--json", code=None)
        return json.loads(result.stdout) if result.exit_code == 0 else None

    lineage = wait_for("the prediction in the registry's index", indexed, timeout=120)
    assert lineage["prediction_id"] == pid and lineage["model_version"]["ref"]["version"] == str(first)
    tree = aif("lineage", f"{name}:{trained}").stdout
    assert f"model {name}/{name} v{trained}" in tree and "run " in tree and "audit trail" in tree

    # status now: the champion, the model loaded, this run's consumer groups' lag.
    status = aif.json("status")
    (entry,) = status["usecases"]
    assert entry["use_case"] == name and entry["champion"]["version"] == first
    (loaded,) = status["models_loaded"]
    assert loaded["model"] == name and loaded["ready"] is True and loaded["versions"], loaded
    groups = {row["group"] for row in status["consumer_lag"]}
    assert groups and all(g.startswith(f"{run}-") for g in groups), status["consumer_lag"]
    assert "use cases" in aif("status").stdout

    # drift: no report yet for this use case; a report that does not exist is one line, exit 1.
    assert aif.json("drift", "list", "-u", name) == []
    missing = aif("drift", "show", "no-such-report", code=1)
    assert missing.stderr.count("\n") == 1 and "NOT_FOUND" in missing.stderr

    # audit: the chain holds and records what was done here.
    assert aif.json("audit", "verify")["valid"] is True
    actions = {e["action"] for e in aif.json("audit", "list", "--use-case", name, "--limit", "500")}
    assert {
        "usecase.created",
        "model_version.approved",
        "model_version.rejected",
        "alias.rollback",
    } <= actions

    # Errors: no token, a token of another use case (exit 2, one line saying what to do).
    anonymous = aif("--token-file", str(tmp_path / "empty"), "models", "list", name, code=2)
    assert "cannot read the token file" in anonymous.stderr
    (tmp_path / "other.token").write_text(stack.auth.issue("mallory", {"loan_approval": ["approver"]}))
    denied = aif("--token-file", str(tmp_path / "other.token"), "models", "approve", name, str(third), code=2)
    assert (
        denied.stderr.count("\n") == 1
        and "PERMISSION_DENIED" in denied.stderr
        and "aif token issue" in denied.stderr
    )

    # token (its own argparse interface, unchanged) and the console entry point.
    keys = tmp_path / "keys"
    assert aif("token", "--dir", str(keys), "keygen").exit_code == 0
    issued = aif(
        "token", "--dir", str(keys), "issue", "--sub", "x", "--role", f"{name}:auditor"
    ).stdout.strip()
    assert issued.count(".") == 2
    listed_sub = subprocess.run(
        [sys.executable, "-m", "aif.cli", "usecase", "list", "--json"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, env={**_os_env(), "AIF_CONFIG": str(aif.config)},
    )  # fmt: skip
    assert listed_sub.returncode == 0 and json.loads(listed_sub.stdout)[0]["use_case"] == name

    # retire.
    retired = aif.json("usecase", "retire", name, "--reason", "cli test over")
    assert retired["use_case"]["state"] == "retired"
    assert aif.json("usecase", "list") == [] and aif.json("usecase", "list", "--all")[0]["state"] == "retired"


def _os_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("AIF_TOKEN", "AIF_TOKEN_FILE", "AIF_CONTEXT")}
