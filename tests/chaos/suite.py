"""The chaos suite: a fresh factory under a bounded load, every part killed or restarted once.

A fresh factory of its own (Kafka, Triton, the seven services, its state dir) and a
private PostgreSQL (the registry and the monitor keep their databases there, so a
PostgreSQL restart hits live services). The load: ``records`` loan applications on the
raw topic, a decision for each through the gateway and its outcome through the feedback
API (see :mod:`tests.chaos.load`). While the load runs, each service in turn is killed
with SIGKILL and started again, then the Kafka broker, PostgreSQL and Triton are
restarted once each; the disruptions are spread evenly over the load (the k-th starts
when k/(n+1) of the records are sent). After each one, a canary record must go end to
end (raw topic → online → prediction → feedback): the time from the kill to that is the
seconds to recover. A watchdog restarts any service that exits on its own, as a
supervisor would, and counts it.

After the load, the suite waits until the sources stop changing (bounded), then counts
from them (:mod:`tests.chaos.truth`) against the ledger, prints the table and returns
the failures:
any record, prediction or feedback join lost or doubled, any request abandoned after its
retries, any disruption not recovered from. A service that exits on its own is listed,
not failed: it is how a dead worker asks its supervisor for a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import psycopg
from aiokafka.errors import KafkaError

from aif import infra
from aif.datagen import Example
from aif.loop import LoopConfig, LoopDriver
from aif.loop.factory import Factory, fresh_factory
from aif.stack import SERVICES
from libs.errors import Unavailable
from tests.chaos.load import USE_CASE, App, applications
from tests.chaos.truth import JoinTally, dataset_count, offline_rows, online_records, topic_ids

ROOT = Path(__file__).resolve().parents[2] / "build" / "chaos"
KAFKA_PORT, TRITON_PORT, PG_PORT, SERVICE_OFFSET = 25092, 25000, 25432, 12600
INFRA = ("kafka", "postgres", "triton")
# Schemas of the private PostgreSQL, one per service that keeps its database there.
ON_POSTGRES = ("registry", "monitor")


@dataclass(frozen=True)
class ChaosConfig:
    records: int = 20_000  # all records, bootstrap included; each served once
    bootstrap: int = 2_000  # records with outcomes (feedback topic) before the first model
    batch: int = 50
    lanes: int = 3  # concurrent app loops
    gap_s: float = 3.0  # load between one recovery and the next disruption, at least
    timeout_s: float = 900.0  # the whole load and chaos phase
    settle_s: float = 120.0  # at most, waiting for the sources to stop changing


@dataclass
class Disruption:
    target: str
    at_s: float = 0.0  # since the chaos phase started
    down_s: float = 0.0  # kill → component answering again
    recover_s: float | None = None  # kill → a canary went end to end
    failed_requests: int = 0  # failed gateway attempts while it lasted


@dataclass
class Row:
    metric: str
    source: str
    expected: int
    observed: int
    lost: int
    doubled: int
    note: str = ""
    sample: list[str] = field(default_factory=list)  # a few ids lost or doubled, to look up


@dataclass
class Outcome:
    rows: list[Row] = field(default_factory=list)
    disruptions: list[Disruption] = field(default_factory=list)
    failed: Counter[str] = field(default_factory=Counter)
    gave_up: Counter[str] = field(default_factory=Counter)
    unexpected_exits: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)  # the suite itself could not finish a step
    seconds: float = 0.0

    def failures(self) -> list[str]:
        out = list(self.problems)
        out += [f"{r.metric} ({r.source}): {r.lost} lost" for r in self.rows if r.lost]
        out += [f"{r.metric} ({r.source}): {r.doubled} doubled" for r in self.rows if r.doubled]
        out += [f"{call}: {n} requests abandoned after retries" for call, n in self.gave_up.items()]
        out += [f"{d.target}: did not recover" for d in self.disruptions if d.recover_s is None]
        # An exit on its own is not a failure: a service whose worker dies must exit so its
        # supervisor restarts it (the watchdog here); the table lists each one.
        return out


@contextlib.contextmanager
def private_postgres(root: Path, port: int) -> Iterator[infra.PostgresHandle]:
    """A PostgreSQL cluster of this suite's own (fresh data dir), one schema per service."""
    config = dataclasses.replace(infra.InfraConfig.from_env(), infra_dir=root, pg_port=port)
    handle = infra.ensure_postgres(config)
    try:
        with psycopg.connect(handle.dsn, autocommit=True) as conn:
            for schema in ON_POSTGRES:
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
                conn.execute(f'CREATE SCHEMA "{schema}"')
        yield handle
    finally:
        handle.stop()


def _restart_postgres_elsewhere(pg: infra.PostgresHandle) -> None:
    """Restarts the private PostgreSQL from a fresh Python process (``python -m aif.infra``).

    Starting postgres as root drops to the postgres user, so Python must fork() rather than
    vfork; forked from this process, where gRPC threads are busy, the child can abort in
    gRPC's fork handler before it execs (seen: ``ev_epoll1_linux.cc: Check failed``). A
    process without gRPC does the fork instead.
    """
    config = pg.component.config
    env = {**os.environ, "AIF_INFRA_DIR": str(config.infra_dir), "AIF_PG_PORT": str(config.pg_port)}
    for command in ("down", "up"):
        subprocess.run(
            [sys.executable, "-m", "aif.infra", command, "postgres"],
            env=env,
            check=True,
            timeout=120,
            stdout=subprocess.DEVNULL,
        )


def _database_urls(dsn: str) -> dict[str, str]:
    base = dsn.replace("postgresql://", "postgresql+psycopg://", 1)
    return {f"AIF_{n.upper()}_DATABASE_URL": f"{base}?options=-csearch_path%3D{n}" for n in ON_POSTGRES}


class Chaos:
    """The load, the disruptions and the watchdog, on one running factory."""

    def __init__(
        self, factory: Factory, pg: infra.PostgresHandle, cfg: ChaosConfig, say: Callable[[str], None]
    ) -> None:
        self.f, self.pg, self.cfg, self.say = factory, pg, cfg, say
        self.md = factory.stack.metadata("chaos-app")
        self.app = App(factory.kafka.bootstrap_servers, factory.targets(), self.md)
        every = list(applications(cfg.records + 100))
        self.examples, self.canaries = every[: cfg.records], iter(every[cfg.records :])
        monitor_metrics = SERVICES["monitor"][1] + factory.stack.port_offset
        self.joins = JoinTally(f"http://127.0.0.1:{monitor_metrics}/metrics")
        self.outcome = Outcome()
        self._busy: set[str] = set()  # services being killed/restarted on purpose
        # Records the lanes may have sent by now: one step of the load per disruption.
        self._step = (cfg.records - cfg.bootstrap) // (len(SERVICES) + len(INFRA) + 1)
        self._allowed = cfg.bootstrap + self._step

    # -- phases ----------------------------------------------------------------------

    async def bootstrap(self) -> None:
        """History with outcomes, then the first model, trained, promoted and serving."""
        cfg = self.cfg
        history = self.examples[: cfg.bootstrap]
        async with LoopDriver(
            self.f.kafka.bootstrap_servers,
            self.f.targets(),
            self.f.stack.metadata("chaos-operator"),
            LoopConfig(),
            say=lambda line: self.say(f"  {line.strip()}"),
        ) as driver:
            for i in range(0, len(history), 200):
                batch = history[i : i + 200]
                await self.app.produce(batch)
                await driver.report_outcomes(batch)
            if not await self.app.online(history[-1:], timeout=120):
                raise RuntimeError("the history did not reach the online store")
            rows = await driver.wait_training_data()
            self.say(f"  {len(history):,} records with outcomes; {rows:,} labelled examples")
            version = await driver.train_first_model()
            while await driver.champion() != version:
                await asyncio.sleep(0.25)
            await driver.wait_serving(version, history[-1])
            self.say(f"  v{version} champion and serving")

    async def run(self) -> Outcome:
        started = time.monotonic()
        async with self.app:
            await self.bootstrap()
            self.say(f"==> load: {self.cfg.records - self.cfg.bootstrap:,} records served under chaos")
            self._t0 = time.monotonic()
            queue = iter(self.examples[self.cfg.bootstrap :])
            batches = iter(lambda: list(itertools.islice(queue, self.cfg.batch)), [])
            watchdog = asyncio.create_task(self._watchdog())
            lanes = [asyncio.create_task(self._lane(batches)) for _ in range(self.cfg.lanes)]
            try:
                await asyncio.wait_for(
                    asyncio.gather(self._disrupt_all(), *lanes), timeout=self.cfg.timeout_s
                )
            except TimeoutError:
                # Still count what was sent: the table says what the factory did in time.
                self.outcome.problems.append(f"the load did not finish in {self.cfg.timeout_s:.0f}s")
            finally:
                if watchdog.done() and not watchdog.cancelled() and watchdog.exception() is not None:
                    # Services that exited after this went unrestarted: say why.
                    self.outcome.problems.append(f"the watchdog died: {watchdog.exception()!r}")
                for task in [*lanes, watchdog]:
                    task.cancel()
                await asyncio.gather(*lanes, watchdog, return_exceptions=True)
            self.say("==> settling, then counting from the sources")
            try:
                await self._count()
            except (grpc.aio.AioRpcError, KafkaError, OSError, KeyError, ValueError) as exc:
                # A source that cannot be read is a failure; the rows counted so far still print.
                self.outcome.problems.append(f"counting stopped: {type(exc).__name__}: {exc}")
        self.outcome.failed = self.app.ledger.failed
        self.outcome.gave_up = self.app.ledger.gave_up
        self.outcome.seconds = time.monotonic() - started
        return self.outcome

    async def _lane(self, batches: Iterator[list[Example]]) -> None:
        for batch in batches:
            # Paced by the chaos: at most one step of records beyond the disruptions
            # started, so every disruption happens under load and none after it ends.
            while self._sent() >= self._allowed:
                await asyncio.sleep(0.05)
            await self.app.round_trip(batch)

    def _sent(self) -> int:
        return len(self.app.ledger.records)

    async def _disrupt_all(self) -> None:
        targets, step = [*SERVICES, *INFRA], self._step
        for k, target in enumerate(targets, start=1):
            self._allowed = self.cfg.bootstrap + (k + 1) * step
            while self._sent() < self.cfg.bootstrap + k * step:
                await asyncio.sleep(0.1)
            d = Disruption(target, at_s=time.monotonic() - self._t0)
            failed_before = sum(self.app.ledger.failed.values())
            began = time.monotonic()
            await asyncio.to_thread(self._disrupt, target)
            d.down_s = time.monotonic() - began
            canary = [next(self.canaries)]
            try:
                if await self.app.round_trip(canary):
                    d.recover_s = time.monotonic() - began
            finally:
                d.failed_requests = sum(self.app.ledger.failed.values()) - failed_before
                self.outcome.disruptions.append(d)
            recover = f"{d.recover_s:.1f}s" if d.recover_s is not None else "never"
            self.say(
                f"  {d.at_s:6.1f}s {target:<12} back in {d.down_s:5.1f}s, end to end in {recover}; "
                f"{self._sent():,} records sent"
            )
            await asyncio.sleep(self.cfg.gap_s)
        self._allowed = self.cfg.records  # the rest of the load, after the last disruption

    def _disrupt(self, target: str) -> None:
        """SIGKILL and restart a service; a clean restart of Kafka, PostgreSQL or Triton."""
        if target in SERVICES:
            self._busy.add(target)
            try:
                if target == "monitor":
                    self.joins.bank()  # what the old process joined, before it is gone
                self.f.stack.kill(target, signal.SIGKILL)
                self.f.stack.restart(target, timeout=120)
            finally:
                self._busy.discard(target)
            return
        if target == "postgres":
            _restart_postgres_elsewhere(self.pg)
            return
        handle = {"kafka": self.f.kafka, "triton": self.f.triton}[target]
        handle.restart_server(timeout=120)

    async def _watchdog(self) -> None:
        """Scrapes the monitor's joins; restarts (and counts) a service that exited on its own."""
        while True:
            await asyncio.to_thread(self.joins.scrape)
            for name, svc in list(self.f.stack.running.items()):
                if name in self._busy or svc.process.poll() is None:
                    continue
                self.outcome.unexpected_exits[name] += 1
                self.say(f"  !! {name} exited on its own with {svc.process.returncode}; restarting it")
                self._busy.add(name)
                try:
                    if name == "monitor":
                        self.joins.bank()
                    await asyncio.to_thread(self.f.stack.restart, name, 120)
                except Unavailable as exc:
                    # It exited again on its way up (Kafka still restarting, say): the next
                    # round sees it down and restarts it again, as a supervisor would. A
                    # watchdog that died here would leave it down for the rest of the run.
                    self.say(f"  !! {name} did not come back ({exc}); trying again")
                    await asyncio.sleep(2.0)
                finally:
                    self._busy.discard(name)
            await asyncio.sleep(0.5)

    # -- counting --------------------------------------------------------------------

    async def _settle(self, probe: Callable[[], object], done: Callable[[object], bool]) -> object:
        """``probe()`` until ``done`` or it has not changed for 15 s (bounded by settle_s)."""
        deadline = time.monotonic() + self.cfg.settle_s
        last, since = None, time.monotonic()
        while True:
            value = (
                await asyncio.to_thread(probe) if not asyncio.iscoroutinefunction(probe) else await probe()
            )
            if done(value) or time.monotonic() > deadline:
                return value
            if value != last:
                last, since = value, time.monotonic()
            elif time.monotonic() - since > 15:
                return value
            await asyncio.sleep(1.0)

    async def _count(self) -> None:
        ledger, f = self.app.ledger, self.f
        rows = self.outcome.rows
        target = f.targets()
        records = ledger.records

        async def online() -> int:
            seen = await online_records(target["featurestore"], self.md, {e: r for r, e in records.items()})
            return sum(1 for r, e in records.items() if seen.get(e) == r)

        n_online = await self._settle(online, lambda v: v == len(records))
        assert isinstance(n_online, int)
        rows.append(
            Row(
                "records",
                "online store (row per entity shows the record)",
                len(records),
                n_online,
                len(records) - n_online,
                0,
                "a double cannot show: one row per entity",
            )
        )

        dataset_dir = f.root / "state" / "raw" / USE_CASE

        def offline() -> int:
            return len(set(offline_rows(dataset_dir)) & set(records))

        await self._settle(offline, lambda v: v == len(records))
        stored = offline_rows(dataset_dir)
        mine = {r: n for r, n in stored.items() if r in records}
        rows.append(
            Row(
                "records",
                "offline dataset (parquet rows)",
                len(records),
                len(mine),
                len(records) - len(mine),
                sum(n - 1 for n in mine.values() if n > 1),
                f"{len(stored) - len(mine)} unknown ids" if len(stored) > len(mine) else "",
                sorted(set(records) - set(mine))[:10] + [r for r, n in mine.items() if n > 1][:10],
            )
        )
        api = await dataset_count(target["ingestion"], self.md)
        rows.append(
            Row(
                "records",
                "offline dataset (GetDataset count)",
                len(records),
                api,
                max(0, len(records) - api),
                max(0, api - len(records)),
            )
        )

        bootstrap = f.kafka.bootstrap_servers
        predictions = await topic_ids(bootstrap, "aif.predictions", "prediction_id", keep="!shadow")
        known = {p: n for p, n in predictions.items() if p in ledger.predictions}
        rows.append(
            Row(
                "predictions",
                "aif.predictions topic",
                len(ledger.predictions),
                len(known),
                len(ledger.predictions) - len(known),
                sum(n - 1 for n in known.values() if n > 1),
                f"{len(predictions) - len(known)} logged but never returned (failed requests)",
                sorted(set(ledger.predictions) - set(known))[:10]
                + [p for p, n in known.items() if n > 1][:10],
            )
        )
        feedback = await topic_ids(bootstrap, "aif.feedback", "feedback_id")
        fb_known = {k: n for k, n in feedback.items() if k in ledger.feedback}
        # Recording is idempotent by feedback_id (the event id every consumer deduplicates
        # on): an attempt the gateway published but could not answer (killed in between)
        # is sent again under the same id, so the topic may hold it twice with one effect
        # (the joins row below counts the monitor's). Only copies beyond the failed
        # attempts can be a doubling.
        resent = sum(n - 1 for n in fb_known.values() if n > 1)
        retried = sum(n for k, n in ledger.failed.items() if k.startswith("RecordFeedback "))
        rows.append(
            Row(
                "feedback",
                "aif.feedback topic",
                len(ledger.feedback),
                len(fb_known),
                len(ledger.feedback) - len(fb_known),
                max(0, resent - retried),
                f"{resent} sent again under its feedback_id after a failed attempt (consumers deduplicate)"
                if resent
                else "",
                [k for k, n in fb_known.items() if n > 1][:10],
            )
        )

        def joined() -> int:
            self.joins.scrape()
            return self.joins.total("joined")

        n_joined = await self._settle(joined, lambda v: v == len(ledger.feedback))
        assert isinstance(n_joined, int)
        j = self.joins
        rows.append(
            Row(
                "feedback joins",
                "monitor (aif.monitor.join.joined after its restarts)",
                len(ledger.feedback),
                n_joined,
                max(0, len(ledger.feedback) - n_joined),
                max(0, n_joined - len(ledger.feedback)),
                f"expired {j.total('expired')}, unmatched {j.total('unmatched')}, late {j.total('late')}; "
                + (
                    "counter at restart: " + ", ".join(f"{a:,} → {b:,}" for a, b in j.rewinds)
                    if j.rewinds
                    else "no restart seen"
                ),
            )
        )


def table(outcome: Outcome) -> str:
    lines = [
        f"{'metric':<15} {'source':<58} {'expected':>9} {'observed':>9} {'lost':>6} {'doubled':>8}  note",
    ]
    for r in outcome.rows:
        lines.append(
            f"{r.metric:<15} {r.source:<58} {r.expected:>9,} {r.observed:>9,} {r.lost:>6,} {r.doubled:>8,}  {r.note}"
        )
        if r.sample:
            lines.append(f"{'':<15} ids lost or doubled, first: {', '.join(r.sample[:5])}")
    lines.append("")
    lines.append(f"{'disruption':<14} {'at s':>7} {'back s':>7} {'recover s':>10} {'failed requests':>16}")
    for d in outcome.disruptions:
        rec = f"{d.recover_s:.1f}" if d.recover_s is not None else "never"
        kind = "kill -9" if d.target in SERVICES else "restart"
        lines.append(
            f"{d.target + ' ' + kind:<20} {d.at_s:>7.1f} {d.down_s:>7.1f} {rec:>10} {d.failed_requests:>16,}"
        )
    lines.append("")
    failed = ", ".join(f"{k}: {v}" for k, v in sorted(outcome.failed.items())) or "none"
    lines.append(f"requests failed at the gateway (attempts, retried): {failed}")
    gave_up = ", ".join(f"{k}: {v}" for k, v in sorted(outcome.gave_up.items())) or "none"
    lines.append(f"requests abandoned: {gave_up}")
    exits = ", ".join(f"{k}: {v}" for k, v in sorted(outcome.unexpected_exits.items())) or "none"
    lines.append(f"unexpected exits (restarted by the watchdog): {exits}")
    lines += [f"problem: {p}" for p in outcome.problems]
    lines.append(f"run time {outcome.seconds:.0f}s")
    return "\n".join(lines)


def run(cfg: ChaosConfig, say: Callable[[str], None] = print) -> Outcome:
    say(f"==> chaos: fresh factory under {ROOT}")
    started = time.monotonic()
    with (
        private_postgres(ROOT.with_name("chaos-pg"), PG_PORT) as pg,
        fresh_factory(
            ROOT,
            kafka_port=KAFKA_PORT,
            triton_port=TRITON_PORT,
            service_offset=SERVICE_OFFSET,
            say=say,
            env=_database_urls(pg.dsn),
        ) as factory,
    ):
        say(f"    postgres {pg.dsn.rsplit('@', 1)[-1]} (registry, monitor)")
        outcome = asyncio.run(Chaos(factory, pg, cfg, say).run())
    outcome.seconds = time.monotonic() - started
    report = {
        "rows": [dataclasses.asdict(r) for r in outcome.rows],
        "disruptions": [dataclasses.asdict(d) for d in outcome.disruptions],
        # Counters by hand: dataclasses.asdict rebuilds a Counter from its items, as keys.
        "failed_attempts": dict(outcome.failed),
        "abandoned": dict(outcome.gave_up),
        "unexpected_exits": dict(outcome.unexpected_exits),
        "seconds": outcome.seconds,
        "failures": outcome.failures(),
    }
    (ROOT / "report.json").write_text(json.dumps(report, indent=2))
    return outcome
