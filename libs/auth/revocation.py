"""The revocation list: a text file of revoked token ids (jti), one a line.

Every service reads the same file; it is re-read when its modification time, size
or inode changes, so ``aif token revoke`` takes effect on the next call without a
restart. A missing file means nothing is revoked; an unreadable one fails closed.
"""

from __future__ import annotations

import fcntl
import os
import threading
from pathlib import Path


class RevocationList:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._ids: frozenset[str] = frozenset()

    def __contains__(self, jti: object) -> bool:
        return jti in self._current()

    def _current(self) -> frozenset[str]:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return frozenset()
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        with self._lock:
            if stamp != self._stamp:
                text = self.path.read_text(encoding="utf-8")
                self._ids = frozenset(line.split("#", 1)[0].strip() for line in text.splitlines()) - {""}
                self._stamp = stamp
            return self._ids

    def revoke(self, jti: str) -> bool:
        """Appends ``jti``; False when it was already revoked."""
        if not jti or any(c.isspace() or c == "#" for c in jti):
            raise ValueError(f"not a token id: {jti!r}")
        if jti in self:
            return False
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Append under a lock: two revocations at once must not interleave a line.
        with self.path.open("a", encoding="utf-8") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                fh.write(jti + "\n")
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)
        return True
