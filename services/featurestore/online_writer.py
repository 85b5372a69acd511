"""Where Feast's online writes run: in this process, or in a child process of their own.

An online write costs about as much CPU as everything else the stream does per record
(Feast turns each row into protobufs and upserts one SQLite row per feature). In the
service process it would share one core with faust under the GIL; in a child process
it runs on another core, which roughly doubles the records per second one service can
keep fresh. Both run ``FeatureStore.write_to_online_store(view, df)``.
"""
from __future__ import annotations

import logging
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Protocol

import pyarrow as pa

log = logging.getLogger(__name__)


class OnlineWriter(Protocol):
    def write(self, view: str, rows: pa.Table) -> None: ...

    def close(self) -> None: ...


class InProcessWriter:
    def __init__(self, store: Any) -> None:
        self._store = store

    def write(self, view: str, rows: pa.Table) -> None:
        self._store.write_to_online_store(view, rows.to_pandas())

    def close(self) -> None:
        pass


# -- the child process --------------------------------------------------------------

_child_store: Any = None


def _open(repo: str) -> None:
    global _child_store
    from feast import FeatureStore

    _child_store = FeatureStore(repo_path=repo)


def _write(view: str, rows: pa.Table) -> int:
    _child_store.write_to_online_store(view, rows.to_pandas())
    return rows.num_rows


def _ready() -> bool:
    return _child_store is not None


class ChildProcessWriter:
    """One spawned worker process holding its own ``FeatureStore`` on the same repo.

    A dead worker (killed, out of memory) fails the write in progress, which the stream
    retries; the next write starts a new worker.
    """

    def __init__(self, repo: str) -> None:
        self._repo = repo
        self._pool: ProcessPoolExecutor | None = None

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            # spawn, not fork: the service process has threads (faust's consumer, gRPC).
            self._pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                                             initializer=_open, initargs=(self._repo,))
        return self._pool

    def start(self) -> None:
        """Start the worker now (Feast imports take seconds); the first write waits for it."""
        self._executor().submit(_ready)

    def write(self, view: str, rows: pa.Table) -> None:
        try:
            self._executor().submit(_write, view, rows).result()
        except BrokenProcessPool:
            log.warning("online writer process died; starting a new one")
            self.close()
            raise

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
