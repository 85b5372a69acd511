"""Personal fields are hashed (keyed, truncated) or dropped before anything is logged."""

from __future__ import annotations

import datetime as dt

import pytest

from libs.auth.privacy import PiiPolicy, PiiRedactor, pseudonym, redact_pii
from libs.errors import ConfigError
from libs.settings import load_settings
from services.gateway.settings import GatewaySettings
from tests.security.conftest import record

SALT = "test-salt-0123456789"
RECORD = {
    "applicant_id": "A-17",
    "email": "ann@example.com",
    "income": 52000,
    "address": {"street": "1 Main St", "city": "Lyon"},
    "history": [{"email": "old@example.com", "amount": 3}],
    "phone": None,
}
PII = {"email", "street", "phone"}


def test_hash_replaces_each_personal_value_by_a_keyed_hex_prefix_at_any_depth() -> None:
    out = redact_pii(RECORD, PII, "hash", SALT)
    assert out["email"] == pseudonym("ann@example.com", SALT.encode()) and len(out["email"]) == 16
    assert all(c in "0123456789abcdef" for c in out["email"])
    assert out["address"] == {"street": pseudonym("1 Main St", SALT.encode()), "city": "Lyon"}
    assert out["history"][0]["email"] != "old@example.com" and out["history"][0]["amount"] == 3
    assert out["phone"] is None and out["income"] == 52000 and out["applicant_id"] == "A-17"
    assert "ann@example.com" not in repr(out) and "1 Main St" not in repr(out)
    assert RECORD["email"] == "ann@example.com", "the input is not modified"
    record("privacy_cases", 4)


def test_drop_removes_personal_fields() -> None:
    out = redact_pii(RECORD, PII, PiiPolicy.DROP, "")
    assert "email" not in out and "phone" not in out and out["address"] == {"city": "Lyon"}
    assert out["history"] == [{"amount": 3}]
    record("privacy_cases")


def test_hashes_join_but_depend_on_the_salt() -> None:
    a = PiiRedactor({"email"}, "hash", SALT).redact({"email": "x@y.z"})
    b = PiiRedactor({"email"}, "hash", SALT).redact({"email": "x@y.z"})
    c = PiiRedactor({"email"}, "hash", "another-salt").redact({"email": "x@y.z"})
    assert a == b != c
    assert pseudonym(dt.datetime(2024, 1, 2, 3, 4), b"s") == pseudonym("2024-01-02T03:04:00", b"s")
    record("privacy_cases", 2)


def test_hashing_without_a_salt_is_refused_and_the_salt_comes_from_settings() -> None:
    with pytest.raises(ConfigError, match="AIF_PRIVACY_SALT"):
        PiiRedactor({"email"}, "hash", "")
    settings = load_settings(GatewaySettings, {"AIF_PRIVACY_SALT": SALT})
    assert PiiRedactor.from_settings(settings, {"email"}, "hash").redact({"email": "q"}) == {
        "email": pseudonym("q", SALT.encode())
    }
    assert SALT not in repr(settings), "the salt is a secret: not in reprs or logs"
    record("privacy_cases", 2)


def test_log_hash_is_a_prefix_of_the_hash_ingestion_writes() -> None:
    from services.ingestion.pii import pseudonym as ingestion_pseudonym

    for value in ("ann@example.com", 42, dt.datetime(2024, 5, 6, 7, 8, 9)):
        assert ingestion_pseudonym(value, SALT.encode()).startswith(pseudonym(value, SALT.encode()))
    record("privacy_cases")
