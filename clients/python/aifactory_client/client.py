"""Clients of the gateway's business API (``aifactory.gateway.v1.GatewayService``).

Each call has one deadline (``timeout_s``) that covers its retries: an attempt gets the
time left. A call that fails with a retryable status (``UNAVAILABLE`` by default: the
gateway, Triton or the feature store is away or restarting) is tried again after an
exponential backoff with full jitter, while attempts and time remain; any other status
raises :class:`GatewayError` at once. Feedback is made idempotent before it is retried:
the client gives it a ``feedback_id`` when the caller did not.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar, Union

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from aifactory.common.v1 import common_pb2
from aifactory.gateway.v1 import gateway_service_pb2 as pb
from aifactory.gateway.v1 import gateway_service_pb2_grpc as pb_grpc

Scalar = Union[float, int, str, bool, None]  # noqa: UP007 - the client supports Python 3.10
T = TypeVar("T")


@dataclass(frozen=True)
class Prediction:
    """One answer. In a batch, an input that could not be scored has ``error`` set
    (``"<CODE>: <message>"``) and no output."""

    prediction_id: str
    entity_id: str
    use_case: str
    model_name: str
    model_version: int
    output: Scalar
    outputs: Mapping[str, Scalar]
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error


@dataclass(frozen=True)
class PredictionInput:
    """One input of a batch: an entity id (features read online), inline features, or both."""

    entity_id: str = ""
    features: Mapping[str, Scalar] = field(default_factory=dict)


class GatewayError(Exception):
    """The gateway refused or failed a call; ``code`` is its gRPC status."""

    def __init__(self, code: grpc.StatusCode, message: str, attempts: int = 1) -> None:
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message
        self.attempts = attempts


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 4
    initial_backoff_s: float = 0.1
    max_backoff_s: float = 2.0
    multiplier: float = 2.0
    retry_on: frozenset[grpc.StatusCode] = frozenset({grpc.StatusCode.UNAVAILABLE})

    def backoffs(self) -> Iterator[float]:
        """The wait before each retry (full jitter: uniform in [0, cap])."""
        cap = self.initial_backoff_s
        for _ in range(self.attempts - 1):
            yield random.uniform(0, cap)
            cap = min(cap * self.multiplier, self.max_backoff_s)


NO_RETRY = RetryPolicy(attempts=1)
# A gateway back after a restart is reached within seconds: gRPC's own reconnect backoff
# would otherwise grow to two minutes while the call's retries find the channel still down.
CHANNEL_OPTIONS: tuple[tuple[str, Any], ...] = (("grpc.max_reconnect_backoff_ms", 2000),)


# -- values ----------------------------------------------------------------------------


def to_value(value: Scalar) -> common_pb2.Value:
    if value is None:
        return common_pb2.Value(null_value=0)
    if isinstance(value, bool):
        return common_pb2.Value(bool_value=value)
    if isinstance(value, int):
        return common_pb2.Value(int64_value=value)
    if isinstance(value, float):
        return common_pb2.Value(double_value=value)
    if isinstance(value, str):
        return common_pb2.Value(string_value=value)
    raise TypeError(f"expected a number, string, boolean or None, got {type(value).__name__}")


def from_value(value: common_pb2.Value) -> Scalar:
    kind = value.WhichOneof("kind")
    return None if kind in (None, "null_value") else getattr(value, kind)


def _features(features: Mapping[str, Scalar] | None) -> dict[str, common_pb2.Value]:
    return {k: to_value(v) for k, v in (features or {}).items()}


def _prediction(p: pb.Prediction) -> Prediction:
    return Prediction(
        prediction_id=p.prediction_id,
        entity_id=p.entity_id,
        use_case=p.model.use_case,
        model_name=p.model.model_name,
        model_version=p.model.version,
        output=from_value(p.output) if p.HasField("output") else None,
        outputs={k: from_value(v) for k, v in p.outputs.items()},
        error=p.error,
    )


def _inputs(items: Iterable[PredictionInput | Mapping[str, Any]]) -> list[pb.PredictionInput]:
    out = []
    for item in items:
        if isinstance(item, Mapping):
            item = PredictionInput(item.get("entity_id", ""), item.get("features") or {})
        out.append(pb.PredictionInput(entity_id=item.entity_id, features=_features(item.features)))
    return out


def _timestamp(at: datetime | None) -> Timestamp | None:
    if at is None:
        return None
    ts = Timestamp()
    ts.FromDatetime(at)
    return ts


def feedback_request(
    use_case: str,
    prediction_id: str,
    outcome: Scalar,
    *,
    feedback_id: str | None = None,
    observed_at: datetime | None = None,
    record_id: str = "",
    event_time: datetime | None = None,
    entity_id: str = "",
) -> pb.RecordFeedbackRequest:
    return pb.RecordFeedbackRequest(
        use_case=use_case,
        prediction_id=prediction_id,
        outcome=to_value(outcome),
        feedback_id=feedback_id or uuid.uuid4().hex,  # so a retried call records it once
        observed_at=_timestamp(observed_at),
        record_id=record_id,
        event_time=_timestamp(event_time),
        entity_id=entity_id,
    )


# -- the channel -----------------------------------------------------------------------


def _credentials(
    tls_ca: bytes | None, tls_cert: bytes | None, tls_key: bytes | None
) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(
        root_certificates=tls_ca, private_key=tls_key, certificate_chain=tls_cert
    )


@dataclass
class _Settings:
    target: str
    token: str | None
    timeout_s: float
    retry: RetryPolicy

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.token}"),) if self.token else ()


def _failure(exc: grpc.RpcError, attempts: int) -> GatewayError:
    code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
    details = exc.details() if hasattr(exc, "details") else str(exc)
    return GatewayError(code, details or code.name, attempts)


class GatewayClient:
    """Blocking client. ``token``: the bearer token (a JWT from ``aif token issue``);
    ``tls_ca`` (PEM bytes) switches to TLS, with ``tls_cert``/``tls_key`` for mutual TLS."""

    def __init__(
        self,
        target: str,
        *,
        token: str | None = None,
        timeout_s: float = 5.0,
        retry: RetryPolicy = RetryPolicy(),
        tls_ca: bytes | None = None,
        tls_cert: bytes | None = None,
        tls_key: bytes | None = None,
    ) -> None:
        self._settings = _Settings(target, token, timeout_s, retry)
        self._channel = (
            grpc.secure_channel(target, _credentials(tls_ca, tls_cert, tls_key), CHANNEL_OPTIONS)
            if tls_ca
            else grpc.insecure_channel(target, CHANNEL_OPTIONS)
        )
        self._stub = pb_grpc.GatewayServiceStub(self._channel)

    def __enter__(self) -> GatewayClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    def _call(self, method: Callable[..., T], request: Any, timeout_s: float | None) -> T:
        s = self._settings
        deadline = time.monotonic() + (timeout_s or s.timeout_s)
        backoffs = s.retry.backoffs()
        attempts = 0
        while True:
            attempts += 1
            left = deadline - time.monotonic()
            try:
                return method(request, timeout=max(left, 0.001), metadata=s.metadata)
            except grpc.RpcError as exc:
                error = _failure(exc, attempts)
                wait = next(backoffs, None) if error.code in s.retry.retry_on else None
                if wait is None or time.monotonic() + wait >= deadline:
                    raise error from None
                time.sleep(wait)

    def predict(
        self,
        use_case: str,
        *,
        entity_id: str = "",
        features: Mapping[str, Scalar] | None = None,
        timeout_s: float | None = None,
    ) -> Prediction:
        """One prediction: by ``entity_id`` (features read online), inline ``features``, or both
        (inline ones win)."""
        request = pb.PredictRequest(use_case=use_case, entity_id=entity_id, features=_features(features))
        return _prediction(self._call(self._stub.Predict, request, timeout_s).prediction)

    def predict_batch(
        self,
        use_case: str,
        inputs: Sequence[PredictionInput | Mapping[str, Any]],
        *,
        timeout_s: float | None = None,
    ) -> list[Prediction]:
        """One prediction per input, in order; a bad input fails only its own (``error``)."""
        request = pb.PredictBatchRequest(use_case=use_case, inputs=_inputs(inputs))
        return [_prediction(p) for p in self._call(self._stub.PredictBatch, request, timeout_s).predictions]

    def record_feedback(
        self, use_case: str, prediction_id: str, outcome: Scalar, *, timeout_s: float | None = None, **kw: Any
    ) -> str:
        """Reports the outcome of a prediction; returns its feedback id (idempotency key).
        Keywords: ``feedback_id``, ``observed_at``, ``record_id``, ``event_time``, ``entity_id``."""
        request = feedback_request(use_case, prediction_id, outcome, **kw)
        reply: pb.RecordFeedbackResponse = self._call(self._stub.RecordFeedback, request, timeout_s)
        return reply.feedback_id


class AsyncGatewayClient:
    """The same client on ``grpc.aio``: every method is a coroutine."""

    def __init__(
        self,
        target: str,
        *,
        token: str | None = None,
        timeout_s: float = 5.0,
        retry: RetryPolicy = RetryPolicy(),
        tls_ca: bytes | None = None,
        tls_cert: bytes | None = None,
        tls_key: bytes | None = None,
    ) -> None:
        self._settings = _Settings(target, token, timeout_s, retry)
        self._channel = (
            grpc.aio.secure_channel(target, _credentials(tls_ca, tls_cert, tls_key), CHANNEL_OPTIONS)
            if tls_ca
            else grpc.aio.insecure_channel(target, CHANNEL_OPTIONS)
        )
        self._stub = pb_grpc.GatewayServiceStub(self._channel)

    async def __aenter__(self) -> AsyncGatewayClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._channel.close()

    async def _call(self, method: Callable[..., Awaitable[T]], request: Any, timeout_s: float | None) -> T:
        s = self._settings
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (timeout_s or s.timeout_s)
        backoffs = s.retry.backoffs()
        attempts = 0
        while True:
            attempts += 1
            left = deadline - loop.time()
            try:
                return await method(request, timeout=max(left, 0.001), metadata=s.metadata)
            except grpc.RpcError as exc:
                error = _failure(exc, attempts)
                wait = next(backoffs, None) if error.code in s.retry.retry_on else None
                if wait is None or loop.time() + wait >= deadline:
                    raise error from None
                await asyncio.sleep(wait)

    async def predict(
        self,
        use_case: str,
        *,
        entity_id: str = "",
        features: Mapping[str, Scalar] | None = None,
        timeout_s: float | None = None,
    ) -> Prediction:
        request = pb.PredictRequest(use_case=use_case, entity_id=entity_id, features=_features(features))
        return _prediction((await self._call(self._stub.Predict, request, timeout_s)).prediction)

    async def predict_batch(
        self,
        use_case: str,
        inputs: Sequence[PredictionInput | Mapping[str, Any]],
        *,
        timeout_s: float | None = None,
    ) -> list[Prediction]:
        request = pb.PredictBatchRequest(use_case=use_case, inputs=_inputs(inputs))
        reply = await self._call(self._stub.PredictBatch, request, timeout_s)
        return [_prediction(p) for p in reply.predictions]

    async def record_feedback(
        self, use_case: str, prediction_id: str, outcome: Scalar, *, timeout_s: float | None = None, **kw: Any
    ) -> str:
        request = feedback_request(use_case, prediction_id, outcome, **kw)
        reply: pb.RecordFeedbackResponse = await self._call(self._stub.RecordFeedback, request, timeout_s)
        return reply.feedback_id
