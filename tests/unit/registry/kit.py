"""The registry's core and store on a real database: what the shared suite works with.

The suite (test_core.py, test_store.py) runs on a SQLite file here (conftest.py) and
again on PostgreSQL in tests/integration/test_registry.py; each place provides the
``database_url`` fixture and builds its ``kit`` with :func:`open_kit`.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from aifactory.registry.v1 import events_pb2 as registry_events
from services.registry.artifacts import FileArtifactStore
from services.registry.convert import KIND_TO_PB
from services.registry.core import Registry, utcnow
from services.registry.domain import (
    CHAMPION,
    AliasChangeKind,
    Evaluation,
    GateResult,
    Metric,
    ModelKey,
    ModelVersion,
    NewVersion,
    VersionKey,
)
from services.registry.export import TritonExporter
from services.registry.runs import RunTracker
from services.registry.store import SqlStore, open_store
from tests.unit.registry.helpers import AUTO, GATED, principal, reference_doc, torchscript_model, usecases

USECASES = usecases()
ENGINEER = principal("eve", "ml-engineer")
APPROVER = principal("ann", "approver", use_case=GATED)
KIND_OF = {pb: kind for kind, pb in KIND_TO_PB.items()}


@cache
def model() -> bytes:
    """A TorchScript model of the AUTO use case (both use cases share the loan spec's inputs)."""
    return torchscript_model(USECASES[AUTO])


@cache
def reference(use_case: str) -> bytes:
    return json.dumps(reference_doc(USECASES[use_case])).encode()


@dataclass
class Kit:
    registry: Registry
    runs: RunTracker
    store: SqlStore
    artifacts: FileArtifactStore
    # The registry's export area (ExportModelVersion's default folder).
    repo: Path
    url: str


@contextmanager
def open_kit(url: str, tmp_path: Path) -> Iterator[Kit]:
    """A registry on ``url`` (migrated), its artifacts and export area under ``tmp_path``."""
    store = open_store(url)
    try:
        artifacts = FileArtifactStore(tmp_path / "artifacts")
        repo = tmp_path / "exports"
        registry = Registry(store, artifacts, USECASES, TritonExporter(repo, artifacts), clock=utcnow)
        yield Kit(registry, RunTracker(store, USECASES, utcnow), store, artifacts, repo, url)
    finally:
        store.close()


def register(kit: Kit, use_case: str = AUTO, who: Any = ENGINEER, **fields: Any) -> ModelVersion:
    new = NewVersion(use_case=use_case, name=fields.pop("name", use_case), **fields)
    return kit.registry.register_version(new, who, artifact=model(), reference_profile=reference(use_case))


def verdict(key: VersionKey, passed: bool, report_id: str | None = None) -> Evaluation:
    gates = (GateResult("metric_floor", "auc", 0.9 if passed else 0.6, 0.75, passed, ">="),)
    return Evaluation(
        report_id or f"report-{uuid.uuid4().hex[:8]}",
        key,
        passed,
        gates=gates,
        metrics=(Metric("auc", 0.9 if passed else 0.6, "holdout"),),
    )


def champion(kit: Kit, use_case: str = AUTO) -> int:
    alias, _ = kit.registry.get_alias(ModelKey(use_case, use_case), CHAMPION)
    return alias.version


def pending_events(kit: Kit) -> list[tuple[str, int, int, AliasChangeKind]]:
    """What the outbox relay would publish next: (alias, old, new, kind) per event."""
    out = []
    for _, outgoing in kit.store.pending(1000):
        event = outgoing.event
        assert isinstance(event, registry_events.AliasChanged)
        out.append((event.alias, event.old_version, event.new_version, KIND_OF[event.kind]))
    return out
