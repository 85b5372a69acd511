"""The prediction log's write-ahead file: a prediction answered is never lost with the process.

The prediction log (:mod:`services.gateway.predlog`) publishes off the reply path, so a
prediction is answered before it is on Kafka. Each entry is therefore also appended to a
local file of this gateway replica before the request returns (one ``write`` system
call: once it returns, the entry is in the kernel's page cache and survives a kill -9 of
the process). The flusher ``fsync``s the file before each publish, so a crash of the
machine itself loses at most the entries of one flush interval. After each publish the
file ``published`` records how far the entries are on Kafka (segment and frame, one
``pwrite``). At start, the entries after that mark are read back into the log's buffer
and published. The entries of the last publish before a kill may be on Kafka without
the mark saying so: the prediction log looks them up on the topic before it sends them
again (:meth:`services.gateway.predlog.PredictionLog.start`), so none is published twice.

Files are segments ``predlog-<n>.wal``: a new one starts when the current one passes
``segment_bytes`` or when the log has published everything; a segment is deleted once
every entry in it is on Kafka.

Format: a segment starts with a header, ``AIFWAL`` and the format version as a ``u16``
(:data:`FORMAT`). A frame is ``<u32 length><u32 crc32>`` and the entry's fields as a
:mod:`marshal` tuple (the raw input/output bytes, not the encoded event: encoding stays
off the reply path). A torn last frame (a crash during the write) is ignored. A frame
whose checksum does not match ends the reading of its segment (its length can no
longer be trusted): the segment is kept aside as ``*.wal.damaged`` and the loss logged.
A segment of another format version (written by another release) is never guessed at:
the gateway refuses to start, naming the file, until a release that reads it has
drained it or someone moves it away. Segments without a header are the format before
versions (0), still read.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import marshal
import os
import shutil
import struct
import tempfile
import zlib
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import numpy as np

from libs.errors import ConfigError
from services.gateway.predlog import Served

log = logging.getLogger(__name__)

BUILD = Path(__file__).resolve().parents[2] / "build" / "gateway"


class _WalSettings(Protocol):
    grpc_port: int
    predlog_wal_dir: Path | None


def wal_dir(settings: _WalSettings) -> Path:
    """The replica's folder: ``predlog_wal_dir``, else one per gRPC port on this host (a
    gateway on port 0, a test's, gets a fresh one: nothing to find again after a restart)."""
    if settings.predlog_wal_dir is not None:
        return settings.predlog_wal_dir
    if settings.grpc_port == 0:
        return Path(tempfile.mkdtemp(prefix="aif-predlog-"))
    return BUILD / f"predlog-{settings.grpc_port}"


_LEN = struct.Struct("<I")
_FRAME = struct.Struct("<II")  # length, crc32
_MAGIC = b"AIFWAL"
_HEADER = struct.Struct("<6sH")
FORMAT = 1
_MARSHAL_VERSION = 4
_PREFIX = "predlog-"
_SUFFIX = ".wal"
# The mark: frames 0..frames-1 of segment ``segment`` (and every earlier segment) are on Kafka.
_MARK = struct.Struct("<QQ")  # segment, frames
_MARK_FILE = "published"


class WriteAheadLog:
    """Append-only segments of served entries in ``directory`` (one gateway replica's own)."""

    def __init__(self, directory: Path, *, segment_bytes: int = 64 << 20) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        # One process per folder: two replicas appending to (and deleting) the same
        # segments would publish each other's entries and lose their own.
        self._lock = os.open(directory / "lock", os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock)
            raise ConfigError(
                f"predlog_wal_dir {directory} is in use by another gateway process: give each replica its own"
            ) from None
        self._segment_bytes = segment_bytes
        found = self._segments()
        self._recovered = found
        try:
            self.check()
        except ConfigError:
            os.close(self._lock)
            raise
        self._mark_fd = os.open(directory / _MARK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        mark = os.pread(self._mark_fd, _MARK.size, 0)
        self._mark: tuple[int, int] = _MARK.unpack(mark) if len(mark) == _MARK.size else (-1, 0)
        # Never a number the mark has passed (its segments may have been removed by hand).
        self._current = max((found[-1] + 1) if found else 0, self._mark[0] + 1)
        self._fd = self._open(self._current)
        self._size = 0
        self._frames = 0  # frames in the current segment
        # (segment, frame) of every entry appended (or recovered) and not yet published, in order.
        self._order: deque[tuple[int, int]] = deque()

    def _path(self, n: int) -> Path:
        return self.directory / f"{_PREFIX}{n:012d}{_SUFFIX}"

    def _segments(self) -> list[int]:
        return sorted(
            int(p.name[len(_PREFIX) : -len(_SUFFIX)]) for p in self.directory.glob(f"{_PREFIX}*{_SUFFIX}")
        )

    def _open(self, n: int) -> int:
        self.directory.mkdir(parents=True, exist_ok=True)  # removed by hand meanwhile: recreated
        fd = os.open(self._path(n), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        if os.fstat(fd).st_size == 0:
            os.write(fd, _HEADER.pack(_MAGIC, FORMAT))
        return fd

    def check(self) -> None:
        """Refuse (:class:`ConfigError`) segments of a format this release does not read."""
        for n in self._recovered:
            version = _format_of(self._path(n).read_bytes()[: _HEADER.size])
            if version not in (0, FORMAT):
                raise ConfigError(
                    f"prediction log file {self._path(n)} has format {version}; this gateway reads "
                    f"formats 0 and {FORMAT}. Start the release that wrote it to publish it, or move "
                    "the file away (its predictions are then not on the predictions topic)"
                )

    def recover(self) -> Iterator[Served]:
        """The entries the previous process left unpublished, oldest first (call once, first).

        Those after the ``published`` mark; a release before the mark replays every entry of
        the segments it left (the prediction log finds the published ones on the topic)."""
        marked, frames = self._mark
        for n in self._recovered:
            if n >= marked:
                yield from self._read(n, skip=frames if n == marked else 0)
        self._recovered = []

    def _read(self, n: int, skip: int = 0) -> Iterator[Served]:
        """The entries of segment ``n`` from its frame ``skip`` on."""
        path = self._path(n)
        data = path.read_bytes()
        version = _format_of(data[: _HEADER.size])
        pos, head = (_HEADER.size, _FRAME) if version == FORMAT else (0, _LEN)
        index = -1
        while pos + head.size <= len(data):
            size, *crc = head.unpack_from(data, pos)
            frame = data[pos + head.size : pos + head.size + size]
            if len(frame) < size:
                log.warning("prediction log file %s: torn last frame ignored", path.name)
                return
            if crc and zlib.crc32(frame) != crc[0]:
                log.error(
                    "prediction log file %s: damaged at byte %d, the %d bytes after it are not "
                    "replayed; the file is kept as %s",
                    path.name,
                    pos,
                    len(data) - pos,
                    path.name + ".damaged",
                )
                shutil.copyfile(path, path.with_name(path.name + ".damaged"))
                return
            pos += head.size + size
            index += 1
            if index < skip:
                continue  # on Kafka already (the mark says so)
            try:
                served = _decode(frame)
            except (ValueError, EOFError, TypeError) as exc:
                log.error("prediction log file %s: unreadable frame skipped (%s)", path.name, exc)
                continue
            self._order.append((n, index))
            yield served

    def append(self, served: Served) -> None:
        """Write ``served`` to the current segment (returns once the kernel has it)."""
        frame = _encode(served)
        os.write(self._fd, _FRAME.pack(len(frame), zlib.crc32(frame)) + frame)
        self._size += _FRAME.size + len(frame)
        self._order.append((self._current, self._frames))
        self._frames += 1
        if self._size >= self._segment_bytes:
            self._rotate()

    def sync(self) -> None:
        """fsync the current segment (the flusher calls it before each publish)."""
        os.fsync(self._fd)

    def published(self, entries: int) -> None:
        """The oldest ``entries`` entries are on Kafka: mark them so, drop the segments that
        held only those."""
        last = None
        for _ in range(min(entries, len(self._order))):
            last = self._order.popleft()
        if last is not None:
            # One small positioned write: in the page cache once it returns, like the
            # frames; not fsynced (after a machine crash more is replayed, never less).
            self._mark = (last[0], last[1] + 1)
            os.pwrite(self._mark_fd, _MARK.pack(*self._mark), 0)
        if not self._order and self._size:
            self._rotate()  # everything is published: the next start replays nothing
        oldest = self._order[0][0] if self._order else self._current
        for n in self._segments():
            if n >= oldest:
                break
            self._path(n).unlink(missing_ok=True)

    def _rotate(self) -> None:
        os.close(self._fd)
        self._current += 1
        self._fd = self._open(self._current)
        self._size = 0
        self._frames = 0

    def close(self) -> None:
        os.close(self._fd)
        os.close(self._mark_fd)
        if not self._order:
            # Everything is on Kafka: leave nothing behind (bench and test replicas on
            # passing ports would otherwise pile up empty folders).
            for n in self._segments():
                self._path(n).unlink(missing_ok=True)
            (self.directory / _MARK_FILE).unlink(missing_ok=True)
            (self.directory / "lock").unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                self.directory.rmdir()
        os.close(self._lock)  # releases the folder


def _format_of(head: bytes) -> int:
    """A segment's format version from its first bytes (0: written before versions)."""
    if len(head) == _HEADER.size and head.startswith(_MAGIC):
        return int(_HEADER.unpack(head)[1])
    return 0


def _array(value: np.ndarray | bytes | None) -> bytes | None:
    if value is None or isinstance(value, bytes):
        return value
    return value.astype(np.float32, copy=False).tobytes()


def _encode(s: Served) -> bytes:
    # marshal: C-fast (about 0.5 us an entry, against 10 us or more as JSON), and reads
    # only what this process wrote, in a folder only it can write (0600 files).
    return marshal.dumps(
        (
            s.use_case,
            s.model_name,
            s.version,
            s.alias,
            list(s.prediction_ids),
            list(s.entity_ids),
            s.latency_us,
            s.trace_id,
            s.shadow,
            s.traceparent,
            s.at,
            _array(s.inputs),
            _array(s.outputs),
            s.oip_response,
        ),
        _MARSHAL_VERSION,
    )


def _decode(frame: bytes) -> Served:
    (use_case, model, version, alias, ids, entities, latency, trace, shadow, tp, at, inputs, outputs, oip) = (
        marshal.loads(frame)
    )
    rows = len(ids)
    out = None if outputs is None else np.frombuffer(outputs, dtype=np.float32).reshape(rows, -1)
    return Served(
        use_case, model, version, alias, ids, entities, inputs, out, latency, trace, shadow, oip, tp, at
    )
