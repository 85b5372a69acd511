"""Settings of the gateway service (environment variables AIF_GATEWAY_*)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field, SecretStr

from libs.bus import topics
from libs.settings import FeatureStoreClientSettings, RegistryClientSettings, UseCaseSourceSettings


class GatewaySettings(UseCaseSourceSettings, RegistryClientSettings, FeatureStoreClientSettings):
    service: ClassVar[str] = "gateway"
    # Named as in the other services (AIF_<SERVICE>_REGISTRY_TARGET, _FEATURESTORE_TARGET).
    renamed: ClassVar[Mapping[str, str]] = {
        "registry_url": "registry_target",
        "feature_store_url": "featurestore_target",
    }

    # Business API (GatewayService), health and reflection, behind the shared interceptor.
    grpc_port: int = Field(default=50056, ge=0, le=65535)
    metrics_port: int = Field(default=9106, ge=0, le=65535)
    # The Open Inference Protocol (KServe v2 gRPC, what Triton speaks) on its own port and
    # server: the hot path skips the shared interceptor (spans and metrics per call cost
    # more than the whole pass-through budget). Unset: grpc_port + 10 (50066; a stack
    # that offsets grpc_port offsets it too; 0 when grpc_port is 0); -1: not served.
    oip_port: int | None = Field(default=None, ge=-1, le=65535)
    # HTTP/JSON (services/gateway/http.py): KServe v2 REST, the business API, /openapi.json.
    # Unset: grpc_port + 20 (50076; 0 when grpc_port is 0); -1: not served.
    http_port: int | None = Field(default=None, ge=-1, le=65535)
    # Calls in flight on the OIP port, per caller (token subject) and per ModelStreamInfer
    # stream; a call beyond either answers RESOURCE_EXHAUSTED at once.
    oip_max_inflight_per_caller: int = Field(default=256, ge=1, le=1_000_000)
    oip_max_inflight_per_stream: int = Field(default=64, ge=1, le=1_000_000)

    # Use cases this gateway serves, comma-separated; empty: every spec.
    use_cases: str = ""

    triton_url: str = "127.0.0.1:8001"
    # The gateway's key to Triton's model control: Triton runs with its restricted protocol
    # (model repository, model config, statistics, shared memory, trace, logging need the
    # header "triton-grpc-protocol-<TRITON_CONTROL_HEADER>: <key>"), and only the gateway
    # holds the key. Empty: no header (a Triton started without the restriction).
    triton_control_key: SecretStr = SecretStr("")
    # The gateway loads each version into Triton through Triton's API (its config and files
    # in the load call), as the registry's serving bundle gives them (GetServingBundle over
    # registry_target): no folder is shared with Triton or the registry. The config's
    # instance group: "cpu" or "gpu"; empty: the registry's triton_instance_kind. With
    # registry_target "" (static aliases), versions come from Triton's own repository.
    triton_config_variant: Literal["", "cpu", "gpu"] = ""
    # Deadline of one inference call to Triton; a slow or hung Triton answers UNAVAILABLE.
    infer_timeout_s: float = Field(default=2.0, gt=0, le=600)
    # While Triton is down the circuit is open: calls fail at once, a probe runs this often.
    health_interval_s: float = Field(default=0.1, gt=0, le=60)
    # Deadline of a model load (Triton loads and initialises the python backend stub).
    load_timeout_s: float = Field(default=120.0, gt=0, le=3600)
    # Inferences sent to a freshly loaded version before it takes traffic.
    warmup_requests: int = Field(default=3, ge=0, le=1000)
    # Longest wait for in-flight calls of a retired version before it is unloaded.
    retire_grace_s: float = Field(default=2.0, ge=0, le=600)
    # Row coalescing: while this many calls to a model version are in flight, further
    # rows queue and go together in the next call (0: never coalesce).
    coalesce_inflight: int = Field(default=1, ge=0, le=1024)
    coalesce_max_rows: int = Field(default=256, ge=1, le=65536)

    # Where the champion comes from: the registry (registry_target: gRPC GetAlias at start,
    # then AliasChanged events); registry_target "" with static_aliases only, e.g.
    # "loan_approval:champion=2,loan_approval:challenger=3". service_token goes to the
    # registry and the feature store (featurestore_target) when auth is on.
    static_aliases: str = ""
    model_promoted_topic: str = topics.MODEL_PROMOTED
    dead_letter_topic: str = topics.DEAD_LETTER

    feature_timeout_s: float = Field(default=1.0, gt=0, le=60)
    # How long feedback for a prediction not served here waits for the registry's index to
    # have it (another replica's prediction log is published every predlog_flush_ms).
    feedback_lookup_wait_s: float = Field(default=1.5, ge=0, le=60)

    predictions_topic: str = topics.PREDICTIONS
    feedback_topic: str = topics.FEEDBACK
    # Prediction log: a bounded buffer flushed in batches; when full, predictions are
    # dropped and counted (gateway.predictions.dropped), never waited for.
    predlog_capacity: int = Field(default=50_000, ge=1, le=10_000_000)
    predlog_batch: int = Field(default=500, ge=1, le=100_000)
    # A flush runs when predlog_batch rows wait, else every predlog_flush_ms. Each flush
    # (encoding, a produce request, the broker's work) delays the requests that arrive
    # during it; with 2 cores shared by client, gateway, Triton and broker, flushing every
    # 50 ms put ~3% of requests in a flush's way and the p99 at 2.4-2.9x Triton's, every
    # 500 ms 1.4-2.2x (same runs, interleaved). Predictions then reach Kafka up to 0.5 s later.
    predlog_flush_ms: int = Field(default=500, ge=1, le=60_000)
    # The prediction log's write-ahead files (services/gateway/writeahead.py), one folder per
    # replica on a disk that outlives the process; unset: build/gateway/predlog-<grpc_port>
    # (replicas on one host differ by port; a restart on the same port finds its files).
    # predlog_wal off: none, and a kill -9 loses the predictions answered, not yet published.
    predlog_wal: bool = True
    predlog_wal_dir: Path | None = None
    # Log predictions served through the Open Inference Protocol too.
    predlog_oip: bool = True

    @property
    def oip_address(self) -> str | None:
        """Where the OIP server listens; None when it is off."""
        port = self.oip_port
        if port is None:
            port = self.grpc_port + 10 if self.grpc_port else 0
        return None if port < 0 else f"{self.grpc_host}:{port}"

    @property
    def http_address(self) -> str | None:
        """Where the HTTP/JSON server listens; None when it is off."""
        port = self.http_port
        if port is None:
            port = self.grpc_port + 20 if self.grpc_port else 0
        return None if port < 0 else f"{self.grpc_host}:{port}"
