"""Infrastructure start errors quote why a daemon exited, not only its shutdown chatter."""

from __future__ import annotations

from pathlib import Path

from aif.infra._proc import log_tail


def test_the_reason_survives_a_long_shutdown(tmp_path: Path) -> None:
    log = tmp_path / "kafka.log"
    shutdown = "".join(f"INFO [Reaper-{i}]: Shutdown completed\n" for i in range(200))
    log.write_text("INFO starting\nERROR Exiting: Address already in use (port 27092)\n" + shutdown)

    quoted = log_tail(log, lines=25)

    lines = quoted.splitlines()
    assert lines[0] == "ERROR Exiting: Address already in use (port 27092)"
    assert lines[-1] == "INFO [Reaper-199]: Shutdown completed"
    assert len(lines) == 1 + 1 + 25  # the reason, the elision mark, the tail


def test_only_what_was_written_after_since_is_quoted(tmp_path: Path) -> None:
    log = tmp_path / "kafka.log"
    earlier = "ERROR an earlier run's failure\n"
    log.write_text(earlier + "INFO ready\n")

    assert log_tail(log, since=len(earlier)) == "INFO ready"
    assert log_tail(tmp_path / "absent.log") == ""
