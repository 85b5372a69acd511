"""Use-case specs: valid ones load, invalid ones fail with the key and its line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from libs.usecase import DEFAULT_DIR, TEMPLATE, UseCaseError, load_default, load_usecases, parse_usecase

LOAN = (DEFAULT_DIR / "loan_approval.yaml").read_text()


def replace_line(text: str, old: str, new: str) -> str:
    assert old in text, old
    return text.replace(old, new, 1)


def error_of(text: str) -> UseCaseError:
    with pytest.raises(UseCaseError) as info:
        parse_usecase(text, "spec.yaml")
    return info.value


def line_of(text: str, fragment: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if fragment in line)


def test_shipped_use_cases_differ_in_entity_schema_and_label() -> None:
    specs = load_default()
    loan, seg = specs["loan_approval"], specs["image_segments"]
    assert (loan.task, seg.task) == ("binary", "multiclass")
    assert loan.entity.field != seg.entity.field
    assert loan.label.arrives == "feedback" and seg.label.arrives == "record"
    assert set(loan.fields).isdisjoint(set(seg.fields) - {"event_time"})
    assert loan.model_inputs()[:4] == ["salary", "commission", "age", "elevel__0"]
    assert loan.pii_fields() == {"applicant_name": "hash"}


def test_unknown_key_is_named_with_its_line() -> None:
    text = replace_line(LOAN, "model:\n", "model:\n  hiden: [3]\n")
    err = error_of(text)
    assert err.key == "model.hiden" and err.line == line_of(text, "hiden")
    assert "unknown key" in str(err) and str(err).startswith(f"spec.yaml:{err.line}:")


def test_wrong_type_is_named_with_its_line() -> None:
    text = replace_line(LOAN, "  epochs: 40", "  epochs: many")
    err = error_of(text)
    assert err.key == "model.epochs" and err.line == line_of(text, "epochs: many")
    assert "integer" in err.message


def test_bad_duration() -> None:
    err = error_of(replace_line(LOAN, "ttl: 30d", "ttl: thirty days"))
    assert err.key == "features.ttl" and "duration" in err.message


@pytest.mark.parametrize(
    ("old", "new", "key", "words"),
    [
        ("entity: {field: applicant_id}", "entity: {field: nobody}", "entity.field", "not a field"),
        (
            "{name: loan, source: loan}",
            "{name: loan, source: gender}",
            "features.row.8.source",
            "not numeric",
        ),
        ("metric: auc", "metric: mae", "evaluation.metric", "does not fit classification"),
        ("classes: [0, 1], max_delay", "classes: [0, 1, 2], max_delay", "label.classes", "exactly two"),
        ("attribute: gender", "attribute: colour", "evaluation.fairness.attribute", "not a field"),
        (
            "{name: car, source: car}",
            "{name: car, source: car, transform: one_hot}",
            "features.row.4.source",
            "enum",
        ),
    ],
)
def test_cross_field_rules_name_the_key(old: str, new: str, key: str, words: str) -> None:
    text = replace_line(LOAN, old, new)
    err = error_of(text)
    assert err.key == key and words in err.message
    assert err.line == line_of(text, new)


def test_dangerous_yaml_is_refused() -> None:
    assert "not valid YAML" in error_of("!!python/object/apply:os.system ['true']\n").message
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
        f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
        for i in range(8)
    )
    assert "aliases" in error_of(bomb).message
    assert "larger than" in error_of("x: " + "y" * 300_000).message
    # Names end up in topic names and file paths: no traversal, no shell characters.
    err = error_of(replace_line(LOAN, "name: loan_approval", "name: ../../etc"))
    assert err.key == "name"


def test_a_bad_spec_in_a_directory_loads_nothing(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(LOAN)
    (tmp_path / "b.yaml").write_text(replace_line(LOAN, "name: loan_approval", "name: other\nbogus: 1"))
    with pytest.raises(UseCaseError, match="bogus"):
        load_usecases(sorted(tmp_path.glob("*.yaml")))
    (tmp_path / "b.yaml").write_text(LOAN)
    with pytest.raises(UseCaseError, match="defined twice"):
        load_usecases(sorted(tmp_path.glob("*.yaml")))


def test_template_scaffolds_a_valid_third_use_case(tmp_path: Path) -> None:
    cli = [sys.executable, "-m", "aif.cli", "usecase"]
    made = subprocess.run(
        [*cli, "new", "fraud_check", "--dir", str(tmp_path)], capture_output=True, text=True
    )
    assert made.returncode == 0, made.stderr
    spec = load_usecases([tmp_path / "fraud_check.yaml"])["fraud_check"]
    assert spec.raw_topic == "aif.fraud_check.raw" and spec.pii_fields() == {"email": "hash"}
    assert "__NAME__" in TEMPLATE.read_text()
    checked = subprocess.run(
        [*cli, "validate", str(tmp_path / "fraud_check.yaml")], capture_output=True, text=True
    )
    assert checked.returncode == 0 and "fraud_check v1" in checked.stdout
    (tmp_path / "bad.yaml").write_text("name: Bad Name\n")
    bad = subprocess.run([*cli, "validate", str(tmp_path / "bad.yaml")], capture_output=True, text=True)
    assert bad.returncode == 1 and "INVALID" in bad.stderr
