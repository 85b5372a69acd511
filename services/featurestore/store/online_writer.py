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
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Protocol

import pyarrow as pa

log = logging.getLogger(__name__)
# How long close waits for the writer process to exit before terminating it.
CLOSE_GRACE_S = 3.0


class OnlineWriter(Protocol):
    def write(self, view: str, rows: pa.Table) -> None: ...

    def close(self) -> None: ...


class FeastOnline:
    """``write_to_online_store`` for one ``FeatureStore``, without its slow part when it can.

    On the (default) batched SQLite store, rows go from Arrow straight to the store's
    ``online_write_batch`` (:func:`~services.featurestore.store.sqlite.arrow_rows`): the same
    values Feast would write, without a pandas round trip and Feast's per-value type
    dispatch (together ~0.1 ms of the ~0.2 ms a 26-feature row costs). Other stores get
    Feast's own call.
    """

    def __init__(self, store: Any) -> None:
        from services.featurestore.store.sqlite import (
            BatchedSqliteOnlineStore,
            BatchedSqliteOnlineStoreConfig,
        )

        self.store = store
        self._direct = (
            BatchedSqliteOnlineStore()
            if isinstance(store.config.online_store, BatchedSqliteOnlineStoreConfig)
            else None
        )

    def write(self, view: str, rows: pa.Table) -> None:
        from feast.errors import FeatureViewNotFoundException

        try:
            self._write(view, rows)
        except FeatureViewNotFoundException:
            # A use case applied since this store read its (cached) registry.
            self.store.refresh_registry()
            self._write(view, rows)

    def _write(self, view: str, rows: pa.Table) -> None:
        if self._direct is not None:
            from services.featurestore.store.sqlite import arrow_rows

            feature_view = self.store.get_feature_view(view)
            data = arrow_rows(feature_view, rows)
            if data is not None:
                self._direct.online_write_batch(self.store.config, feature_view, data, None)
                return
        self.store.write_to_online_store(view, rows.to_pandas())


class InProcessWriter:
    def __init__(self, store: Any) -> None:
        self._online = FeastOnline(store)

    def write(self, view: str, rows: pa.Table) -> None:
        self._online.write(view, rows)

    def close(self) -> None:
        pass


# -- the child process --------------------------------------------------------------

_child: FeastOnline | None = None


def _exit_with_parent(parent: int, interval_s: float = 1.0) -> None:
    """Exit once the service process is gone (killed with -9, say).

    A pool worker waits on its call queue, whose write end it holds too (the queue travels
    to a spawned child whole), so the parent's death never wakes it: without this, each
    kill of the service left an idle worker of ~700 MB behind for good. Once the parent
    has died, the worker is someone else's child (``getppid`` changes).
    """
    while os.getppid() == parent:
        time.sleep(interval_s)
    os._exit(0)


def _open(repo: str, parent: int) -> None:
    global _child
    from feast import FeatureStore

    threading.Thread(target=_exit_with_parent, args=(parent,), name="parent-watch", daemon=True).start()

    _child = FeastOnline(FeatureStore(repo_path=repo))
    # Load the registry and the write path's imports now, not on the first micro-batch.
    for view in _child.store.list_feature_views():
        _child.store.get_feature_view(view.name)


def _write(view: str, rows: pa.Table) -> int:
    assert _child is not None, "writer process not initialised"
    _child.write(view, rows)
    return rows.num_rows


def _ready() -> bool:
    return _child is not None


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
            self._pool = ProcessPoolExecutor(
                max_workers=1,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_open,
                initargs=(self._repo, os.getpid()),
            )
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
        if self._pool is None:
            return
        pool, self._pool = self._pool, None
        pool.shutdown(wait=False, cancel_futures=True)
        # shutdown(wait=True) would also wait for a worker still starting (importing Feast
        # takes seconds, far more on a loaded host), past any supervisor's stop timeout. No
        # write is in flight at close (the stream has drained), so a worker that has not
        # exited within the grace is terminated.
        deadline = time.monotonic() + CLOSE_GRACE_S
        for child in multiprocessing.active_children():
            child.join(max(0.0, deadline - time.monotonic()))
            if child.is_alive():
                log.warning("online writer process did not exit within %.0fs; terminating it", CLOSE_GRACE_S)
                child.terminate()
                child.join(2.0)
