"""``aif`` without a factory: contexts, flags, version, help, completion, JSON Schema,
file reading, argument parsing and the one-line errors (tests/integration/test_cli.py
drives every command against a running stack)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import jsonschema
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from typer.testing import CliRunner

from aif.cli.__main__ import main
from aif.cli.app import app
from aif.cli.ingest import records
from aif.cli.lineage import request_for
from aif.cli.predict import value
from aif.cli.schema import json_schema
from aif.datagen import LoanStream, to_json
from libs.usecase import DEFAULT_DIR, load_usecase

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("AIF_CONFIG", str(tmp_path / "config.yaml"))
    for name in ("AIF_TOKEN", "AIF_TOKEN_FILE", "AIF_CONTEXT", "AIF_REGISTRY_TARGET", "AIF_TRAINER_TARGET"):
        monkeypatch.delenv(name, raising=False)
    return CliRunner()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_contexts_are_set_used_listed_and_deleted(cli: CliRunner, tmp_path: Path) -> None:
    assert (
        cli.invoke(app, ["context", "set", "prod", "--registry", "reg:1", "--token-file", "/t"]).exit_code
        == 0
    )
    assert cli.invoke(app, ["context", "set", "dev", "--registry", "dev:2", "--kafka", "k:9"]).exit_code == 0
    listed = json.loads(cli.invoke(app, ["context", "list", "--json"]).stdout)
    assert listed["current_context"] == "prod", "the first context set becomes the current one"
    assert listed["contexts"]["dev"] == {"registry": "dev:2", "kafka": "k:9"}
    assert cli.invoke(app, ["context", "use", "dev"]).exit_code == 0
    shown = json.loads(cli.invoke(app, ["context", "show", "--json"]).stdout)
    assert shown["context"] == "dev" and shown["settings"]["registry"] == "dev:2"
    assert shown["settings"]["gateway"] == "127.0.0.1:50056", "what a context leaves out is the default"
    saved = yaml.safe_load((tmp_path / "config.yaml").read_text())
    assert saved["current-context"] == "dev" and set(saved["contexts"]) == {"dev", "prod"}
    missing = cli.invoke(app, ["context", "use", "nope"])
    assert missing.exit_code == 2 and "aif context set nope" in missing.stderr
    assert cli.invoke(app, ["context", "delete", "dev"]).exit_code == 0
    assert json.loads(cli.invoke(app, ["context", "list", "--json"]).stdout)["current_context"] == ""


def test_flags_win_over_the_context_and_errors_are_one_line(cli: CliRunner) -> None:
    port = closed_port()
    cli.invoke(app, ["context", "set", "here", "--registry", "127.0.0.1:1"])
    # The flag names the (closed) port that the error then names: the flag won.
    result = cli.invoke(app, ["--registry", f"127.0.0.1:{port}", "usecase", "list"])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"registry at 127.0.0.1:{port} is unreachable" in lines[0] and "aif up" in lines[0]
    unknown = cli.invoke(app, ["--context", "other", "status"])
    assert (
        unknown.exit_code == 2 and unknown.stderr.count("\n") == 1 and "no context 'other'" in unknown.stderr
    )


def test_a_broken_config_file_is_named_and_offline_commands_still_run(cli: CliRunner, tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text("contexts:\n  x: {registry: a, secret: b}\n")
    result = cli.invoke(app, ["status"])
    assert result.exit_code == 2 and "unknown key(s) secret" in result.stderr
    made = cli.invoke(app, ["usecase", "new", "fresh_one", "--dir", str(tmp_path)])
    assert made.exit_code == 0 and (tmp_path / "fresh_one.yaml").is_file()
    assert cli.invoke(app, ["usecase", "validate", str(tmp_path / "fresh_one.yaml")]).exit_code == 0


def test_token_file_is_read_and_a_missing_one_is_said(cli: CliRunner, tmp_path: Path) -> None:
    from aif.cli.remote import Remote

    (tmp_path / "tok").write_text("abc.def.ghi\n")
    r = Remote.build(None, {"token-file": str(tmp_path / "tok")}, None)
    assert r.bearer() == "abc.def.ghi"
    assert Remote.build(None, {"token-file": str(tmp_path / "tok")}, "given").bearer() == "given"
    result = cli.invoke(app, ["--token-file", str(tmp_path / "none"), "usecase", "list"])
    assert result.exit_code == 2 and "cannot read the token file" in result.stderr


def test_version_help_exit_codes_and_completion() -> None:
    version = subprocess.run(
        [sys.executable, "-m", "aif.cli", "--version"], capture_output=True, text=True, cwd=ROOT
    )
    assert version.returncode == 0 and version.stdout.startswith("aif ")
    helped = subprocess.run(
        [sys.executable, "-m", "aif.cli", "--help"], capture_output=True, text=True, cwd=ROOT
    )
    assert helped.returncode == 0 and "Exit codes: 0 done; 1" in helped.stdout
    for command in (
        "status",
        "usecase",
        "ingest",
        "train",
        "models",
        "lineage",
        "drift",
        "dlq",
        "predict",
        "audit",
    ):
        assert command in helped.stdout
    completion = subprocess.run(
        [sys.executable, "-m", "aif.cli", "--show-completion", "bash"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert completion.returncode == 0 and "_AIF_COMPLETE" in completion.stdout
    assert main(["models", "list"]) == 2, "a missing argument is a usage error"
    assert main(["--help"]) == 0


def test_json_schema_accepts_what_ingestion_accepts_and_refuses_the_rest() -> None:
    spec = load_usecase(DEFAULT_DIR / "loan_approval.yaml")
    schema = json_schema(spec)
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())
    example = next(iter(LoanStream(seed=1)))
    record = json.loads(to_json({**example.record, "record_id": example.record_id}))
    assert not list(validator.iter_errors(record))
    assert set(schema["required"]) >= {"applicant_id", "event_time", "salary"}
    assert schema["properties"]["applicant_name"]["x-aif-pii"] == "hash"
    for bad in ({**record, "salary": -1}, {**record, "elevel": 9}, {**record, "nope": 1}):
        assert list(validator.iter_errors(bad)), bad
    missing = {k: v for k, v in record.items() if k != "age"}
    assert list(validator.iter_errors(missing))


def test_records_read_alike_from_csv_jsonl_and_parquet(tmp_path: Path) -> None:
    rows = [{"id": "a", "n": 1, "x": 2.5}, {"id": "b", "n": 2}]
    (tmp_path / "r.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    (tmp_path / "r.csv").write_text("id,n,x\na,1,2.5\nb,2,\n")
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "r.parquet")
    assert [json.loads(r) for r in records(tmp_path / "r.jsonl", "jsonl")] == rows
    # CSV cells are text: ingestion reads "1" as an int field's 1; an empty cell is no value.
    assert [json.loads(r) for r in records(tmp_path / "r.csv", "csv")] == [
        {"id": "a", "n": "1", "x": "2.5"},
        {"id": "b", "n": "2"},
    ]
    assert [json.loads(r) for r in records(tmp_path / "r.parquet", "parquet")] == rows


def test_arguments_parse() -> None:
    assert request_for("loan_approval:3").model.version == 3
    assert request_for("loan_approval/other:v2").model.model_name == "other"
    assert request_for("pred-123").prediction_id == "pred-123"
    assert value("3").int64_value == 3 and value("2.5").double_value == 2.5
    assert value("true").bool_value is True and value("f").string_value == "f"
