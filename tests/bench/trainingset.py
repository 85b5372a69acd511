"""trainingset.rows_per_s / trainingset.client_peak_mib: a training set streamed from the
feature store to a client, against reading the same rows from the local parquet file.

A ``ROWS``-row loan_approval training set (its 30 columns, as the feature store writes it:
µs UTC times, float64 model inputs, the fairness attribute as text, row groups of
``ROW_GROUP_ROWS``) is served by the feature store's real servicer behind the shared gRPC
server (JWT authentication and the permission table on), in this process; its core is a
stand-in that answers the already-built set, so the figure is the transport, not the
point-in-time join. The client is ``GrpcTrainingData`` (what the trainer and evaluator
use) in a child process of its own: the call until the frame is rebuilt, its schema,
row count and content hash checked.

Baseline, same run, same file: ``pandas.read_parquet`` of the file in a child process of
its own (what a client on the store's disk did before). Rounds alternate and the median of
each is reported. Memory: each child's peak resident size during the call minus its
resident size just before it, in MiB; the note gives the rebuilt frame's own size. The
peak is the kernel's high-water mark of the child's own address space (``VmHWM``, reset
just before the call through ``/proc/self/clear_refs``), not ``ru_maxrss``: after
``exec`` that one still counts the parent's resident size at the fork, and this parent
holds the whole set.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tests.bench.report import Figure

ROOT = Path(__file__).resolve().parents[2]
ROWS = 1_000_000
ROUNDS = 3
UC = "loan_approval"
_TOKEN_ENV = "AIF_BENCH_TOKEN"


def _frame(rows: int) -> pd.DataFrame:
    """``rows`` loan examples: 20,000 generated ones repeated, each copy later in time."""
    from tests.training_sets import loan_frame

    base = loan_frame(min(rows, 20_000))
    copies = -(-rows // len(base))
    frame = pd.concat([base] * copies, ignore_index=True).iloc[:rows].copy()
    step = pd.to_timedelta(np.arange(rows), unit="s")
    start = pd.Timestamp("2026-01-01", tz="UTC")
    frame["event_time"] = (start + step).astype("datetime64[us, UTC]")
    frame["label_time"] = (start + step + pd.Timedelta(minutes=1)).astype("datetime64[us, UTC]")
    frame["gender"] = frame["gender"].astype("string")
    return frame


@dataclass
class _Core:
    """The servicer's view of ``FeatureStoreCore``: the use cases and the one built set."""

    training: Any
    usecases: Any = field(default=None)

    def training_set(self, use_case: str, start: datetime, end: datetime, feature_names: Any = ()) -> Any:
        self.usecases.require(use_case)
        return self.training


class _Server:
    """The feature store's servicer behind the shared gRPC server, on a loop in a thread."""

    def __init__(self, training: Any, auth_dir: Path) -> None:
        from libs.auth import DevAuth
        from libs.usecase import load_default

        self.auth = DevAuth(auth_dir).ensure()
        self._core = _Core(training, load_default())
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: Any = None
        self.target = ""

    async def _start(self) -> int:
        from aifactory.featurestore.v1 import featurestore_service_pb2 as pb
        from aifactory.featurestore.v1 import featurestore_service_pb2_grpc as pb_grpc
        from libs.auth import JwtAuthenticator, RevocationList, TableAuthorizer, TokenVerifier
        from libs.auth.tokens import REVOKED_FILE, load_public_key
        from libs.rpc import RpcServer, ServerSecurity
        from libs.telemetry import setup_telemetry
        from services.featurestore.servicer import FeatureStoreServicer

        verifier = TokenVerifier(
            load_public_key(self.auth.public_key),
            issuer=self.auth.issuer,
            audience=self.auth.audience,
            revoked=RevocationList(self.auth.directory / REVOKED_FILE),
        )
        security = ServerSecurity(JwtAuthenticator(verifier), TableAuthorizer())
        self._server = RpcServer("127.0.0.1:0", setup_telemetry("bench-featurestore"), security=security)
        self._server.add_service(
            pb_grpc.add_FeatureStoreServiceServicer_to_server,
            FeatureStoreServicer(self._core),  # type: ignore[arg-type]
            pb.DESCRIPTOR.services_by_name["FeatureStoreService"].full_name,
        )
        return int(await self._server.start())

    def __enter__(self) -> _Server:
        self._thread.start()
        port = asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(60)
        self.target = f"127.0.0.1:{port}"
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            asyncio.run_coroutine_threadsafe(self._server.stop(), self._loop).result(60)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


def _rss_mib() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _reset_peak() -> None:
    """Start the resident high-water mark afresh (Linux >= 4.0)."""
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")


def _peak_mib() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    raise RuntimeError("no VmHWM in /proc/self/status")


def _child(argv: list[str], env: dict[str, str] | None = None) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-m", "tests.bench.trainingset", *argv],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"{argv[0]} child failed ({out.returncode}): {out.stderr[-2000:]}")
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def _measure_in_child(mode: str, where: str, rows: int) -> dict[str, float]:
    """Runs in the child: one stream (``where``: the store's address) or one local read
    (``where``: the file), timed, with the resident-size growth it caused."""
    frame: pd.DataFrame
    if mode == "stream":
        from libs.lifecycle.data import GrpcTrainingData
        from libs.rpc import insecure_channel

        async def stream() -> tuple[pd.DataFrame, float, float]:
            async with insecure_channel(where, token=os.environ[_TOKEN_ENV]) as channel:
                data = GrpcTrainingData(channel)
                _reset_peak()
                before = _rss_mib()
                started = time.perf_counter()
                ts = await data.get_training_set(UC, None)
                return ts.frame, time.perf_counter() - started, before

        frame, seconds, before = asyncio.run(stream())
    else:
        _reset_peak()
        before = _rss_mib()
        started = time.perf_counter()
        frame = pd.read_parquet(where)
        seconds = time.perf_counter() - started
    peak = _peak_mib()
    held = _rss_mib() - before
    if len(frame) != rows:
        raise RuntimeError(f"{mode}: {len(frame)} rows, expected {rows}")
    return {
        "seconds": seconds,
        "peak_mib": peak - before,
        # What stays resident once the call returned: the frame (and what the allocators keep).
        "held_mib": held,
    }


def measure_trainingset() -> list[Figure]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from libs.features import feature_refs
    from libs.lifecycle.wire import BATCH_BYTES, content_hash
    from libs.usecase import load_default
    from services.featurestore.training import ROW_GROUP_ROWS, TrainingSet

    rows = ROWS
    with tempfile.TemporaryDirectory(prefix="aif-bench-ts-") as tmp:
        folder = Path(tmp)
        frame = _frame(rows)
        digest = content_hash(frame)
        path = folder / f"{digest[:24]}.parquet"
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path, row_group_size=ROW_GROUP_ROWS)
        columns = len(frame.columns)
        del frame
        uc = load_default()[UC]
        training = TrainingSet(UC, path, rows, digest, feature_refs(uc), [("raw-1", "raw")])
        streamed: list[dict[str, float]] = []
        local: list[dict[str, float]] = []
        with _Server(training, folder / "auth") as server:
            env = {_TOKEN_ENV: server.auth.issue("svc-trainer", {"*": ["svc-trainer"]})}
            _child(["stream", server.target, str(rows)], env)  # warm: connection, first call's imports
            for _ in range(ROUNDS):
                streamed.append(_child(["stream", server.target, str(rows)], env))
                local.append(_child(["local", str(path), str(rows)]))
        size_mib = path.stat().st_size / 2**20

    def median(runs: list[dict[str, float]], key: str) -> float:
        return float(statistics.median(r[key] for r in runs))

    held_mib = median(streamed, "held_mib")
    what = (
        f"{rows:,} rows × {columns} columns ({size_mib:.0f} MiB parquet), batches of ~{BATCH_BYTES >> 10} KiB"
    )
    return [
        Figure(
            "trainingset.rows_per_s",
            rows / median(streamed, "seconds"),
            "rows/s",
            "parquet.local_rows_per_s",
            rows / median(local, "seconds"),
            note=f"{what}; JWT-authenticated stream to a child process, frame rebuilt and "
            "content hash checked; target ratio >= 0.5",
        ),
        Figure(
            "trainingset.client_peak_mib",
            median(streamed, "peak_mib"),
            "MiB",
            "parquet.local_peak_mib",
            median(local, "peak_mib"),
            note=f"peak resident growth of the client during the call; {held_mib:.0f} MiB stay "
            "resident after it (the frame it returns); target < 256 MiB",
        ),
    ]


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] in ("stream", "local"):
        print(json.dumps(_measure_in_child(sys.argv[1], sys.argv[2], int(sys.argv[3]))))
    else:
        for figure in measure_trainingset():
            print(figure, f"ratio={figure.ratio:.3f}")
