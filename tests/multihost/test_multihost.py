"""Proof across hosts (issue #15): the factory with every part on a host of its own.

``make test-multihost`` (root): twelve Linux network namespaces on one bridge, each with
its address, its name in every host's /etc/hosts, its own Unix user and a 0700 folder no
other host can read: Kafka, PostgreSQL, Redis and Triton, the seven services and the app.
The app host onboards the loan-approval use case and a second one into the running
factory (``aif usecase apply``), then runs a short closed loop against the services by
name. Prints a table of the hosts and the loop's one-line summary; writes the loop's
seconds to ``build/multihost/bench.json`` (the bench's row shape; ``make bench`` measures the
same row beside the one-host loop in its own run: tests/bench/multihost.py).
Everything it made is removed at the end, whatever happened (aif.multihost.layout).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest

from aif.multihost import Outcome, render_hosts, run
from aif.multihost.hosts import our_users
from aif.multihost.layout import OUT_DIR, STATE_ROOT
from aif.multihost.topology import NETNS_ETC, PREFIX, ours
from tests.bench.report import Figure

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parents[2]


def _cannot_run() -> str:
    if os.geteuid() != 0:
        return "needs root (network namespaces, users, mounts)"
    missing = [
        tool for tool in ("ip", "unshare", "setpriv", "useradd", "userdel") if shutil.which(tool) is None
    ]
    return f"missing {', '.join(missing)}" if missing else ""


def _one_host_loop_seconds() -> tuple[float | None, str]:
    """loop.seconds of the last `make bench` (one host), for the note beside ours."""
    path = REPO / "build" / "bench.json"
    try:
        rows = json.loads(path.read_text())
    except (OSError, ValueError):
        return None, "no build/bench.json yet"
    row = next((r for r in rows if r.get("name") == "loop.seconds"), None)
    if row is None or row.get("value") is None:
        return None, "build/bench.json has no loop.seconds value"
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(path.stat().st_mtime))
    return float(row["value"]), f"one host: loop.seconds {row['value']:.1f} s (make bench, {when})"


def bench_figure(outcome: Outcome) -> Figure:
    """``loop.seconds.multihost``: drift onset → v2 serving, on this layout; baseline the
    layout's own first model train → serving (as the one-host ``loop.seconds`` row)."""
    loop = outcome.loop
    one_host, note = _one_host_loop_seconds()
    closed = bool(loop.get("closed"))
    return Figure(
        "loop.seconds.multihost",
        loop.get("serving_after_s") if closed else None,
        "s",
        "first_model.train_to_serving_s",
        loop.get("first_model_s"),
        note=note if closed else f"the loop did not close: {outcome.failure or loop.get('summary', '')}",
        failed=not closed,
    )


@pytest.fixture(scope="module")
def outcome() -> Outcome:
    reason = _cannot_run()
    if reason:
        pytest.skip(reason)
    result = run(say=lambda line: print(line, flush=True))
    figure = bench_figure(result)
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    (OUT_DIR / "bench.json").write_text(json.dumps([figure.to_json()], indent=1) + "\n")
    seconds = result.seconds
    print()
    print(render_hosts(result.hosts))
    print(
        f"\n  loop.seconds (drift onset -> v2 serving) on {len(result.hosts)} hosts: "
        f"{figure.value if figure.value is None else round(figure.value, 1)} s"
        f"{f'; {figure.note}' if figure.note else ''} (written to {OUT_DIR / 'bench.json'})"
    )
    print(
        "  wall: "
        + ", ".join(
            f"{k} {v:.1f}s" for k, v in seconds.items() if k in ("layout", "infra", "client", "total")
        )
    )
    if result.permissions_changed:
        print(f"  permissions granted: {'; '.join(result.permissions_changed)}")
    if result.failure:
        print(f"  FAILED: {result.failure}")
    if result.loop.get("summary"):
        print(result.loop["summary"])
    return result


def test_hosts_reach_each_other_by_name_and_nothing_else(outcome: Outcome) -> None:
    assert outcome.checks.get("smoke"), outcome.failure


def test_no_host_can_read_another_hosts_folder(outcome: Outcome) -> None:
    assert outcome.checks.get("isolation"), outcome.failure


def test_the_loop_closes_across_hosts(outcome: Outcome) -> None:
    assert not outcome.failure, outcome.failure
    assert outcome.loop.get("closed"), outcome.loop.get("summary")
    assert set(outcome.loop.get("apply_s", {})) == {"loan_approval", "image_segments"}
    assert outcome.checks.get("no_secrets_in_logs")


def test_nothing_is_left_behind(outcome: Outcome) -> None:
    assert not ours(), ours()
    assert not our_users(), [u.pw_name for u in our_users()]
    assert not list(NETNS_ETC.glob(f"{PREFIX}-*")) if NETNS_ETC.exists() else True
    assert not STATE_ROOT.exists()
