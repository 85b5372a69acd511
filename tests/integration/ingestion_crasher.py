"""Helper process for test_ingestion: the ingestion service, dying at a chosen point of one batch.

``python tests/integration/ingestion_crasher.py <phase> <n>`` runs the real service
(settings from the environment) and exits with status 17 during its n-th raw batch:

- ``in-transaction``: records, dead letters and offsets are sent, the commit is not;
- ``after-commit``: the transaction is committed, the dataset version not yet published;
- ``hang``: the transaction's commit never returns (a broker that stopped answering); the
  service's stall watchdog must end it (exit 70), nothing here does.
"""

from __future__ import annotations

import asyncio
import functools
import os
import sys
from typing import Any

from aiokafka import AIOKafkaProducer

from libs.runtime import run
from libs.usecase import load_default
from services.ingestion.app import build
from services.ingestion.settings import IngestionSettings
from services.ingestion.store import RawDataset

CRASH = 17


def main(phase: str, n: int) -> None:
    seen = 0

    def due() -> bool:
        nonlocal seen
        seen += 1
        return seen == n

    if phase == "in-transaction":
        commit = AIOKafkaProducer.commit_transaction

        async def commit_or_die(self: AIOKafkaProducer) -> None:
            if self._txn_manager.transactional_id.endswith("-grpc") or not due():  # type: ignore[union-attr]
                return await commit(self)
            os._exit(CRASH)

        AIOKafkaProducer.commit_transaction = commit_or_die  # type: ignore[method-assign]
    elif phase == "hang":
        commit = AIOKafkaProducer.commit_transaction

        async def commit_or_hang(self: AIOKafkaProducer) -> None:
            if self._txn_manager.transactional_id.endswith("-grpc") or not due():  # type: ignore[union-attr]
                return await commit(self)
            print("hanging in the commit of a batch", flush=True)
            await asyncio.Event().wait()

        AIOKafkaProducer.commit_transaction = commit_or_hang  # type: ignore[method-assign]
    elif phase == "after-commit":
        publish = RawDataset.publish

        def publish_or_die(self: RawDataset, use_case: str, staged: Any) -> Any:
            if staged and due():
                os._exit(CRASH)
            return publish(self, use_case, staged)

        RawDataset.publish = publish_or_die  # type: ignore[method-assign]
    else:
        raise SystemExit(f"unknown phase {phase!r}")
    # The shipped use cases, fixed (the catalogue is not under test here).
    run(IngestionSettings, functools.partial(build, usecases=load_default()))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
