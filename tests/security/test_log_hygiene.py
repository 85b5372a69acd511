"""Tokens and secrets never reach a log line: not from the interceptor, not by accident."""

from __future__ import annotations

import io
import logging

import grpc
import pytest

from libs.auth import DevAuth
from libs.auth.redaction import MASK, RedactingFilter, install, redact
from libs.runtime import configure_logging
from tests.security.conftest import ServeAll, record
from tests.security.grpc_targets import all_methods, call

FAKE_JWT = "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLXNpZ25hdHVyZQ"


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        (f"authorization: Bearer {FAKE_JWT}", FAKE_JWT),
        ("metadata=(('authorization', 'bearer abcdefghijklmnop'),)", "abcdefghijklmnop"),
        (f"token in a message {FAKE_JWT} mid-sentence", FAKE_JWT),
        ("connect password=hunter2secret host=db", "hunter2secret"),
        ('sasl.jaas.config=... username="admin" password="s3cr3t-pw";', "s3cr3t-pw"),
        ("{'sasl_plain_password': 'kafka-pw-123'}", "kafka-pw-123"),
        ("dsn postgresql://aifactory:pg-secret@127.0.0.1:5432/aifactory", "pg-secret"),
        ("AIF_PRIVACY_SALT=0123456789abcdef", "0123456789abcdef"),
        ("refresh_token: abcdef123456", "abcdef123456"),
        (
            "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEI\n-----END PRIVATE KEY-----",
            "MC4CAQAwBQYDK2VwBCIEI",
        ),
    ],
)
def test_redact_masks_secrets(text: str, secret: str | None) -> None:
    cleaned = redact(text)
    assert MASK in cleaned or secret is None
    if secret:
        assert secret not in cleaned
    record("log_lines_searched")


def test_filter_masks_arguments_and_tracebacks() -> None:
    out = io.StringIO()
    logger = logging.getLogger("tests.security.hygiene")
    handler = logging.StreamHandler(out)
    logger.addHandler(handler)
    logger.propagate = False
    install(logger)
    try:
        logger.warning("header was %s", f"Bearer {FAKE_JWT}")
        try:
            raise ValueError(f"bad token {FAKE_JWT}")
        except ValueError:
            logger.exception("failed")
    finally:
        logger.removeHandler(handler)
    text = out.getvalue()
    assert FAKE_JWT not in text and text.count(MASK) >= 2 and "ValueError" in text
    record("log_lines_searched", len(text.splitlines()))


def test_configure_logging_installs_the_filter() -> None:
    root = logging.getLogger()
    saved = root.handlers[:]
    root.handlers = []
    try:
        configure_logging("test", "INFO")
        assert root.handlers and all(
            any(isinstance(f, RedactingFilter) for f in h.filters) for h in root.handlers
        )
    finally:
        root.handlers = saved


async def test_refused_and_accepted_calls_log_no_token(
    serve_all: ServeAll, dev_auth: DevAuth, caplog: pytest.LogCaptureFixture
) -> None:
    """Every log record of a run of calls with bad, expired, forged and good tokens, searched."""
    channel = await serve_all()
    method = next(m for m in all_methods() if m.path.endswith("/Predict"))
    tokens = [
        dev_auth.token_issuer().issue("alice", {"*": ["app"]}, -120),  # expired
        dev_auth.issue("bob", {"other": ["app"]}, 600),  # wrong scope
        dev_auth.issue("carol", {"*": ["auditor"]}, 600),  # wrong role
        dev_auth.issue("dan", {"*": ["app"]}, 600)[:-4] + "AAAA",  # bad signature
        dev_auth.issue("erin", {"*": ["app"]}, 600),  # good
    ]
    with caplog.at_level(logging.DEBUG):
        for token in tokens:
            await call(channel, method, None, (("authorization", f"Bearer {token}"),))
    text = caplog.text + "\n".join(r.getMessage() for r in caplog.records)
    assert caplog.records, "the refusals are logged"
    assert "reason=expired" in text and "reason=bad_signature" in text and "reason=scope" in text
    for token in tokens:
        for part in token.split("."):
            assert part not in text, "a token (or part of one) reached the log"
    record("log_lines_searched", len(caplog.records))


def test_grpc_status_details_never_carry_the_token(dev_auth: DevAuth) -> None:
    # The interceptor's replies are fixed strings; nothing of the request flows back.
    from libs.errors import PermissionDenied, Unauthenticated
    from libs.rpc.interceptor import _status_of

    assert (
        _status_of(Unauthenticated("token abc expired", reason="expired"))[1]
        == "missing or invalid credentials"
    )
    assert _status_of(PermissionDenied("lacks x", reason="role")) == (
        grpc.StatusCode.PERMISSION_DENIED,
        "permission denied",
    )
