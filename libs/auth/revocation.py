"""The revocation list: a text file every service reads, one entry a line.

- ``<jti>``: that token is refused;
- ``not-before <subject> <unix time>``: every token of ``subject`` issued before that
  time is refused (``aif token revoke --subject svc-trainer``: a leaked service
  credential, whatever its token ids; tokens minted afterwards work).

The file is re-read when its modification time, size or inode changes, so a revocation
takes effect on the next call without a restart. It fails closed: a missing file
refuses every token (``revocation_unavailable``) rather than forgetting every
revocation, so losing the file (a bad mount, a deleted volume) cannot bring a revoked
token back. ``DevAuth.ensure`` and ``aif token keygen`` create it empty.
"""

from __future__ import annotations

import fcntl
import math
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

from libs.errors import Unauthenticated

NOT_BEFORE = "not-before"


@dataclass(frozen=True)
class _Entries:
    ids: frozenset[str] = frozenset()
    # subject → tokens issued (iat) before this time are refused.
    not_before: dict[str, float] = field(default_factory=dict)


def _parse(text: str) -> _Entries:
    ids: set[str] = set()
    cutoffs: dict[str, float] = {}
    for raw in text.splitlines():
        parts = raw.split("#", 1)[0].split()
        if len(parts) == 1:
            ids.add(parts[0])
        elif len(parts) == 3 and parts[0] == NOT_BEFORE:
            try:
                at = float(parts[2])
            except ValueError:
                continue
            cutoffs[parts[1]] = max(at, cutoffs.get(parts[1], at))
    return _Entries(frozenset(ids), cutoffs)


class RevocationList:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._file = os.fspath(path)  # stat on a str: no pathlib conversion per call
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._entries = _Entries()

    def _current(self) -> _Entries | None:
        """The entries, or None when the file is missing (unreadable: OSError)."""
        try:
            st = os.stat(self._file)
        except FileNotFoundError:
            return None
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        if stamp == self._stamp:
            return self._entries  # set before the stamp (below): a matching stamp has its entries
        with self._lock:
            if stamp != self._stamp:
                self._entries = _parse(self.path.read_text(encoding="utf-8"))
                self._stamp = stamp
            return self._entries

    def check(self, jti: str, subject: str, issued_at: float) -> None:
        """Raises ``Unauthenticated``: ``revoked``, or ``revocation_unavailable`` when the
        list cannot be read (missing or unreadable: fails closed)."""
        try:
            entries = self._current()
        except OSError as exc:
            entries = None
            detail = exc.strerror or str(exc)
        else:
            detail = "missing"
        if entries is None:
            raise Unauthenticated(
                f"revocation list {self.path} {detail}: refusing every token", reason="revocation_unavailable"
            )
        if jti in entries.ids:
            raise Unauthenticated(f"token {jti} of {subject} is revoked", reason="revoked")
        cutoff = entries.not_before.get(subject)
        if cutoff is not None and issued_at < cutoff:
            raise Unauthenticated(
                f"tokens of {subject} issued before {cutoff:.0f} are revoked", reason="revoked"
            )

    def __contains__(self, jti: object) -> bool:
        """Whether ``jti`` is listed (a missing list lists nothing: use :meth:`check` to verify)."""
        entries = self._current()
        return entries is not None and jti in entries.ids

    def _append(self, line: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Append under a lock: two revocations at once must not interleave a line.
        with self.path.open("a", encoding="utf-8") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                fh.write(line + "\n")
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def revoke(self, jti: str) -> bool:
        """Appends ``jti``; False when it was already revoked."""
        if not jti or any(c.isspace() or c == "#" for c in jti) or jti == NOT_BEFORE:
            raise ValueError(f"not a token id: {jti!r}")
        if jti in self:
            return False
        self._append(jti)
        return True

    def revoke_subject(self, subject: str, before: float) -> None:
        """Refuses every token of ``subject`` issued before ``before`` (unix time)."""
        if not subject or any(c.isspace() or c == "#" for c in subject):
            raise ValueError(f"not a subject: {subject!r}")
        # Rounded up: a token issued in the same second (iat is whole seconds) is refused too.
        self._append(f"{NOT_BEFORE} {subject} {math.ceil(before)}")
