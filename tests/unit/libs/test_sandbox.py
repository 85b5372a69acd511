"""libs.sandbox on real child processes (no torch: ``preload=()`` keeps them quick)."""

from __future__ import annotations

import os
import signal
import sys

import pytest

from libs import sandbox
from libs.errors import FailedPrecondition, InvalidArgument


def echo(data: bytes) -> bytes:
    return data[::-1]


def refuse(data: bytes, field: str) -> bytes:
    raise InvalidArgument(field, "is not acceptable")


def precondition(data: bytes) -> bytes:
    raise FailedPrecondition("the spec has other inputs")


def forge(data: bytes) -> bytes:
    # What hostile code would print to pass a check it failed: it goes to stderr.
    print('{"ok": true, "data": "", "netns": true, "seconds": 0}', flush=True)
    sys.stdout.write("ready\n")
    raise InvalidArgument("artifact", "failed for real")


def die(data: bytes) -> bytes:
    os.kill(os.getpid(), signal.SIGSEGV)
    return b""


def hog(data: bytes) -> bytes:
    held = []
    while True:
        held.append(bytearray(64 << 20))


def run(target: str, **kwargs: object) -> sandbox.Outcome:
    return sandbox.run(f"{__name__}:{target}", b"abc", preload=(), **kwargs)  # type: ignore[arg-type]


def test_the_result_comes_back() -> None:
    out = run("echo")
    assert out.data == b"cba"
    assert out.seconds >= 0


def test_typed_errors_come_back_as_the_same_types() -> None:
    with pytest.raises(InvalidArgument) as invalid:
        run("refuse", args={"field": "artifact_sha256"})
    assert invalid.value.field == "artifact_sha256"
    assert invalid.value.message == "artifact_sha256: is not acceptable"
    with pytest.raises(FailedPrecondition, match="other inputs"):
        run("precondition")


def test_what_the_code_prints_cannot_forge_a_reply() -> None:
    with pytest.raises(InvalidArgument, match="failed for real"):
        run("forge")


def test_a_crash_and_a_memory_hog_are_refused_by_name() -> None:
    with pytest.raises(sandbox.SandboxRefused) as crashed:
        run("die", field="artifact_content")
    assert crashed.value.reason == "crashed" and crashed.value.field == "artifact_content"
    with pytest.raises(sandbox.SandboxRefused) as hogged:
        run("hog", limits=sandbox.Limits(memory_bytes=512 << 20))
    assert hogged.value.reason == "memory"
    assert "exceeded 512 MiB memory" in hogged.value.message
