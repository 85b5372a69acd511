"""What a consumer does with a lifecycle event its owner does not confirm."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest

from libs.lifecycle.confirm import MAX_REASON, ForgedEvents, Unconfirmed, bounded, clamp, clamp_us


def test_event_times_are_capped_at_now_plus_skew() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert clamp(now + timedelta(days=3650), now, 30) == now + timedelta(seconds=30)
    assert clamp(now - timedelta(hours=1), now, 30) == now - timedelta(hours=1)
    assert clamp_us(10**18, 1_000_000, 30) == 31_000_000
    assert clamp_us(5, 1_000_000, 30) == 5


def test_a_forgery_is_counted_logged_on_one_bounded_line_and_raised(caplog: pytest.LogCaptureFixture) -> None:
    forged = ForgedEvents("registry")
    with caplog.at_level(logging.WARNING):
        error = forged.reject("aifactory.x.v1.X", "evt\n1", "no report " + "A" * 5000 + "\nforged log line")
    assert isinstance(error, Unconfirmed) and error.code.name == "FAILED_PRECONDITION"
    assert forged.counts == {"aifactory.x.v1.X": 1}
    (record,) = [r for r in caplog.records if "not confirmed" in r.getMessage()]
    assert "\n" not in record.getMessage() and len(record.getMessage()) < MAX_REASON + 200
    assert len(bounded("x" * 10_000)) == MAX_REASON
