"""A pytest plugin: at the end of the run, every log written during it is searched for every
token minted during it, every development secret, and every personal value the tests used.

Registered for the whole suite by ``tests/conftest.py`` (``make test`` and ``make
test-security`` both run it). What it searches:

- the log sections pytest captured for each test (log records and stderr);
- every ``*.log`` file (and trace export ``*span*.jsonl``/``*trace*.jsonl``) under this
  run's pytest temporary folder: the service processes the tests started log there;
- the part of every ``build/**/*.log`` file written during the run (infrastructure logs,
  demo and benchmark runs).

What it searches for: the payload and signature parts of each token a ``TokenIssuer``
signed in this process (each part is unique to its token; a log holding either leaked
the token, whole or cut), each privacy salt handed to a service, and the full names the
loan generator gives applicants (``applicant_name``, personal data by the spec).

A hit fails the run (exit status 1) naming the file and line, never the secret itself.
"""

from __future__ import annotations

import functools
import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "build"
MAX_HITS_SHOWN = 20
# A run of this many base64url characters found inside a token part is a leaked piece of it
# (a chance match of 20 random base64 characters is out of the question).
WINDOW = 20
_BASE64URL_RUN = re.compile(rf"[A-Za-z0-9_-]{{{WINDOW},}}")


@dataclass
class Search:
    """What to look for (needle → a label that names it without repeating it) and what was found."""

    needles: dict[str, str] = field(default_factory=dict)
    build_offsets: dict[Path, int] = field(default_factory=dict)
    hits: list[str] = field(default_factory=list)
    files: int = 0
    captured: int = 0  # pytest's captured log and stderr sections
    lines: int = 0
    # Every WINDOW-character piece of every token part: finds a token cut short in a log line.
    windows: dict[str, str] = field(default_factory=dict)
    _pattern: re.Pattern[str] | None = None

    def add(self, needle: str, label: str, min_length: int = 12) -> None:
        # Short needles would match by chance; tokens and salts are far longer than 12.
        if len(needle) >= min_length and needle not in self.needles:
            self.needles[needle] = label
            self._pattern = None

    @property
    def pattern(self) -> re.Pattern[str] | None:
        if self._pattern is None and self.needles:
            # Longest first, so a name is reported as itself and not as a part of another.
            alternatives = sorted(self.needles, key=len, reverse=True)
            self._pattern = re.compile("|".join(map(re.escape, alternatives)))
        return self._pattern

    def add_token_part(self, part: str, label: str) -> None:
        self.add(part, label)
        for i in range(len(part) - WINDOW + 1):
            self.windows.setdefault(part[i : i + WINDOW], label)

    def scan(self, where: str, lines: Iterable[str], first_line: int = 1) -> None:
        pattern = self.pattern
        count = 0
        for number, line in enumerate(lines, first_line):
            count += 1
            if pattern is not None and (match := pattern.search(line)):
                self.hits.append(f"{where}:{number}: {self.needles[match.group(0)]}")
            if self.windows and (label := self._token_piece(line)):
                self.hits.append(f"{where}:{number}: part of the {label}")
        self.lines += count

    def _token_piece(self, line: str) -> str | None:
        for run in _BASE64URL_RUN.findall(line):
            for i in range(len(run) - WINDOW + 1):
                label = self.windows.get(run[i : i + WINDOW])
                if label is not None:
                    return label
        return None


SEARCH = Search()


def personal_values() -> list[str]:
    """Every applicant name the loan generator can produce ("First Last")."""
    from aif.datagen import loan

    return [f"{first} {last}" for first in loan._FIRST for last in loan._LAST]


def _record_tokens() -> None:
    """Wrap TokenIssuer.issue (and DevAuth.env, which hands out the privacy salt) to remember
    what they produce. Behaviour is unchanged: the wrapper returns what the original returns."""
    from libs.auth.dev import DevAuth
    from libs.auth.tokens import TokenIssuer

    issue = TokenIssuer.issue
    if getattr(issue, "_log_search", False):
        return

    @functools.wraps(issue)
    def recording_issue(self: TokenIssuer, subject: str, *args: Any, **kwargs: Any) -> str:
        token = issue(self, subject, *args, **kwargs)
        for i, part in enumerate(token.split(".")[1:], 1):
            SEARCH.add_token_part(
                part, f"{'payload' if i == 1 else 'signature'} of a token minted for {subject!r}"
            )
        return token

    recording_issue._log_search = True  # type: ignore[attr-defined]
    TokenIssuer.issue = recording_issue  # type: ignore[method-assign]

    env = DevAuth.env

    @functools.wraps(env)
    def recording_env(self: DevAuth, *args: Any, **kwargs: Any) -> dict[str, str]:
        values = env(self, *args, **kwargs)
        SEARCH.add(values.get("AIF_PRIVACY_SALT", ""), f"the privacy salt of {self.directory.name}")
        return values

    DevAuth.env = recording_env  # type: ignore[method-assign]


# Kafka's own data files are named like logs (00000000000000000000.log): they hold the
# messages themselves (test data, and topics the tests feed names in clear on purpose).
_KAFKA_SEGMENT = re.compile(r"^\d{20}\.log$")


def _is_log(path: Path) -> bool:
    return path.name.endswith(".log") and not _KAFKA_SEGMENT.match(path.name)


def _build_logs() -> Iterator[Path]:
    if BUILD.is_dir():
        yield from (p for p in BUILD.rglob("*.log") if _is_log(p) and p.is_file())


def pytest_configure(config: pytest.Config) -> None:
    _record_tokens()
    for name in personal_values():
        SEARCH.add(name, f"the applicant name {name!r} (personal data)", min_length=6)
    for path in _build_logs():
        try:
            SEARCH.build_offsets[path] = path.stat().st_size
        except OSError:
            continue


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    # Searched at once (a token can only be logged after it was minted, and is known by then).
    for title, text in report.sections:
        # Each phase's report repeats the sections of the phases before it: only its own.
        if title.endswith(report.when) and ("log" in title or "stderr" in title):
            SEARCH.scan(f"{report.nodeid} [{title}]", text.splitlines())
            SEARCH.captured += 1


def _scan_file(path: Path, offset: int = 0) -> None:
    try:
        with path.open("rb") as fh:
            fh.seek(offset)
            data = fh.read()
    except OSError:
        return
    # Line numbers count from where this run started writing (1: the first line it wrote).
    SEARCH.files += 1
    SEARCH.scan(
        f"{path}" + (f" (from byte {offset})" if offset else ""), data.decode("utf-8", "replace").splitlines()
    )


def _run_logs(config: pytest.Config) -> Iterator[Path]:
    factory = getattr(config, "_tmp_path_factory", None)
    base = getattr(factory, "_basetemp", None) if factory is not None else None
    if base is None or not Path(base).is_dir():
        return
    for path in Path(base).rglob("*"):
        name = path.name
        if path.is_file() and (
            _is_log(path)
            or ".log." in name
            or (name.endswith(".jsonl") and ("span" in name or "trace" in name))
        ):
            yield path


def search(config: pytest.Config) -> Search:
    """Runs the search once (at the end of the session); returns its result."""
    if getattr(config, "_log_search_done", False):
        return SEARCH
    config._log_search_done = True  # type: ignore[attr-defined]
    seen: set[Path] = set()
    for path in _run_logs(config):
        seen.add(path.resolve())
        _scan_file(path)
    for path in _build_logs():
        if path.resolve() in seen:
            continue
        offset = SEARCH.build_offsets.get(path, 0)
        try:
            if path.stat().st_size <= offset:
                continue
        except OSError:
            continue
        _scan_file(path, offset)
    return SEARCH


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    result = search(session.config)
    security = sys.modules.get("tests.security.conftest")
    if security is not None and hasattr(security, "record"):
        security.record("log_files_searched", result.files)
        security.record("log_lines_scanned", result.lines)
    if result.hits and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    result = SEARCH
    tokens = sum(1 for label in result.needles.values() if "token" in label) // 2
    summary = (
        f"log search: {result.files} log files, {result.captured} captured test logs, "
        f"{result.lines} lines searched for {tokens} tokens, "
        f"{sum(1 for v in result.needles.values() if 'salt' in v)} secrets and "
        f"{sum(1 for v in result.needles.values() if 'personal' in v)} personal values"
    )
    if not result.hits:
        terminalreporter.write_line(summary + ": none found")
        return
    terminalreporter.section("log search FAILED", sep="=", red=True, bold=True)
    for hit in result.hits[:MAX_HITS_SHOWN]:
        terminalreporter.write_line(hit)
    if len(result.hits) > MAX_HITS_SHOWN:
        terminalreporter.write_line(f"... and {len(result.hits) - MAX_HITS_SHOWN} more")
    terminalreporter.write_line(summary + f": {len(result.hits)} found in clear", red=True)
