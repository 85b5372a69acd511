"""Typed client of the AI Factory gateway's business API (gRPC), with retries and deadlines."""

from aifactory_client.client import (
    NO_RETRY,
    AsyncGatewayClient,
    GatewayClient,
    GatewayError,
    Prediction,
    PredictionInput,
    RetryPolicy,
    Scalar,
)

__all__ = [
    "NO_RETRY",
    "AsyncGatewayClient",
    "GatewayClient",
    "GatewayError",
    "Prediction",
    "PredictionInput",
    "RetryPolicy",
    "Scalar",
]
