"""A bearer token kept in a file, as a Kubernetes Secret or a compose secret mounts it.

A service is given the path (``service_token_file``), never the signing key: the file is
read once at start (a missing or empty one stops the service with a clear message) and
again whenever it changes, so a rotated token is sent from the next call on without a
restart (Kubernetes swaps a mounted secret's files in place).
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

# Seconds between two looks at the file: a stat per call would cost nothing much, but
# nothing needs a rotation to be seen faster than this.
RECHECK_S = 1.0


def read_token(path: Path) -> str:
    """The token in ``path`` (surrounding whitespace stripped); ValueError when unreadable or empty."""
    try:
        text = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ValueError(f"cannot read token file {path}: {exc.strerror or exc}") from None
    if not text:
        raise ValueError(f"token file {path} is empty")
    if any(c.isspace() for c in text):
        raise ValueError(f"token file {path} holds more than one token")
    return text


class TokenFile:
    """Callable returning the file's current token (libs.rpc's ``Token``): re-read when its
    modification time, size or inode changes; the last good token is kept while the file
    is briefly missing or empty during a swap."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._checked = float("-inf")
        self._token = read_token(path)

    def __call__(self) -> str:
        now = time.monotonic()
        if now - self._checked < RECHECK_S:
            return self._token
        with self._lock:
            self._checked = now
            try:
                st = os.stat(self.path)
            except OSError:
                return self._token
            stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
            if stamp != self._stamp:
                try:
                    self._token = read_token(self.path)
                    self._stamp = stamp
                except ValueError:
                    pass
            return self._token
