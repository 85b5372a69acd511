"""A real OpenTelemetry Collector and a real Prometheus for tests and the bench.

``otelcol-aif`` (built by ``deploy/observability/tools.sh`` into build/tools/bin) receives
OTLP and writes what it got with the file exporter, one OTLP/JSON document a line;
:class:`Collector` starts one and reads its traces, metrics and logs back.
:class:`Prometheus` runs Debian's ``prometheus`` on a config of the test's own.
"""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
OTELCOL = ROOT / "build" / "tools" / "bin" / "otelcol-aif"
OBSERVABILITY = ROOT / "deploy" / "observability"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Collector:
    """``otelcol-aif`` on a free port: OTLP/gRPC in, JSON lines out (``<dir>/<signal>.json``)."""

    def __init__(self, folder: Path, *, files: bool = True) -> None:
        self.dir = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        signals = ("traces", "metrics", "logs")
        exporters: dict[str, Any] = (
            {f"file/{s}": {"path": str(folder / f"{s}.json"), "flush_interval": "200ms"} for s in signals}
            if files
            else {"debug": {"verbosity": "basic"}}
        )
        config = {
            "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": f"127.0.0.1:{self.port}"}}}},
            "processors": {"batch": {"timeout": "200ms"}},
            "exporters": exporters,
            "service": {
                # No own metrics endpoint (:8888 by default): several collectors may run.
                "telemetry": {"metrics": {"level": "none"}},
                "pipelines": {
                    s: {
                        "receivers": ["otlp"],
                        "processors": ["batch"],
                        "exporters": [f"file/{s}" if files else "debug"],
                    }
                    for s in signals
                },
            },
        }
        self.config = folder / "otelcol.yaml"
        self.config.write_text(yaml.safe_dump(config))
        self.log = folder / "otelcol.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def validate(self) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(OTELCOL), "validate", f"--config={self.config}"], capture_output=True, text=True, check=False
        )

    def start(self, timeout: float = 30.0) -> Collector:
        if not OTELCOL.exists():
            raise RuntimeError(f"{OTELCOL} is missing: run `make setup` (deploy/observability/tools.sh)")
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [str(OTELCOL), f"--config={self.config}"], stdout=out, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        while True:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return self
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"otelcol did not start; see {self.log}: {self.log.read_text()[-2000:]}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc is not None:
            _stop(self.proc)

    def env(self) -> dict[str, str]:
        """The standard variables that send every signal of a service here, promptly."""
        return {
            "OTEL_EXPORTER_OTLP_ENDPOINT": self.endpoint,
            "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_METRICS_EXPORTER": "otlp",
            "OTEL_LOGS_EXPORTER": "otlp",
            "OTEL_BSP_SCHEDULE_DELAY": "200",
            "OTEL_BLRP_SCHEDULE_DELAY": "200",
            "OTEL_METRIC_EXPORT_INTERVAL": "2000",
        }

    def _documents(self, signal_name: str) -> Iterator[dict[str, Any]]:
        path = self.dir / f"{signal_name}.json"
        if not path.exists():
            return
        for line in path.read_text().splitlines():
            if line.strip():
                yield json.loads(line)

    def spans(self) -> list[Span]:
        out = []
        for doc in self._documents("traces"):
            for rs in doc.get("resourceSpans", []):
                service = _attr(rs.get("resource", {}), "service.name")
                for ss in rs.get("scopeSpans", []):
                    for s in ss.get("spans", []):
                        out.append(
                            Span(
                                service,
                                s["name"],
                                s["traceId"],
                                s["spanId"],
                                s.get("parentSpanId", ""),
                                s.get("kind", ""),
                                len(s.get("links", [])),
                            )
                        )
        return out

    def metric_names(self) -> dict[str, set[str]]:
        """Metric names received, by service."""
        out: dict[str, set[str]] = {}
        for doc in self._documents("metrics"):
            for rm in doc.get("resourceMetrics", []):
                service = _attr(rm.get("resource", {}), "service.name")
                for sm in rm.get("scopeMetrics", []):
                    out.setdefault(service, set()).update(m["name"] for m in sm.get("metrics", []))
        return out

    def log_records(self) -> list[tuple[str, dict[str, Any]]]:
        """(service, OTLP log record) of every log record received."""
        out: list[tuple[str, dict[str, Any]]] = []
        for doc in self._documents("logs"):
            for rl in doc.get("resourceLogs", []):
                service = _attr(rl.get("resource", {}), "service.name")
                for sl in rl.get("scopeLogs", []):
                    out.extend((service, r) for r in sl.get("logRecords", []))
        return out


def _attr(resource: Mapping[str, Any], key: str) -> str:
    for a in resource.get("attributes", []):
        if a.get("key") == key:
            return str(next(iter(a.get("value", {}).values()), ""))
    return ""


@dataclass(frozen=True)
class Span:
    service: str
    name: str
    trace_id: str
    span_id: str
    parent_id: str
    kind: str
    links: int


def trace_of(spans: list[Span], trace_id: str) -> list[Span]:
    return [s for s in spans if s.trace_id == trace_id]


def unconnected(spans: list[Span], root_span_id: str) -> list[Span]:
    """Spans of one trace that do not hang, parent by parent, from the span ``root_span_id``."""
    by_id = {s.span_id: s for s in spans}
    out = []
    for s in spans:
        seen, cur = set(), s
        while cur.span_id != root_span_id and cur.parent_id in by_id and cur.span_id not in seen:
            seen.add(cur.span_id)
            cur = by_id[cur.parent_id]
        if cur.span_id != root_span_id:
            out.append(s)
    return out


class Prometheus:
    """Debian's ``prometheus`` scraping ``jobs`` (name → host:port) every second, with the
    shipped rule files, on a free port and a storage folder of its own."""

    def __init__(self, folder: Path, jobs: Mapping[str, str]) -> None:
        self.dir = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        rules = sorted(str(p) for p in (OBSERVABILITY / "prometheus" / "rules").glob("*.yml"))
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": rules,
            "scrape_configs": [
                {"job_name": name, "static_configs": [{"targets": [target]}]} for name, target in jobs.items()
            ],
        }
        self.config = folder / "prometheus.yml"
        self.config.write_text(yaml.safe_dump(config))
        self.log = folder / "prometheus.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> Prometheus:
        binary = shutil.which("prometheus")
        if binary is None:
            raise RuntimeError("prometheus is missing: run `make setup` (deploy/observability/tools.sh)")
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [
                    binary,
                    f"--config.file={self.config}",
                    f"--storage.tsdb.path={self.dir / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready", timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"prometheus did not start; see {self.log}: {self.log.read_text()[-2000:]}"
                )
            time.sleep(0.2)

    def query(self, expr: str) -> dict[str, Any]:
        """The API's answer to an instant query (``status`` "error" with ``error`` when it does not parse)."""
        url = f"http://127.0.0.1:{self.port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        try:
            with urllib.request.urlopen(url, timeout=10) as r:
                return json.loads(r.read())  # type: ignore[no-any-return]
        except urllib.error.HTTPError as exc:  # 400: a bad expression, with the reason
            return json.loads(exc.read())  # type: ignore[no-any-return]

    def stop(self) -> None:
        if self.proc is not None:
            _stop(self.proc)
