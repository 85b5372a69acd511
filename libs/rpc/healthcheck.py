"""``python -m libs.rpc.healthcheck HOST:PORT [SERVICE]``: exit 0 when SERVING.

Used by docker-compose health checks and by ``make demo``; over mutual TLS when
``AIF_CLIENT_TLS_CA`` (and ``_CERT``/``_KEY``) are set, as for any caller.
"""

from __future__ import annotations

import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from libs.rpc.client import ClientTls, blocking_channel


def check(target: str, service: str = "", timeout: float = 2.0, *, tls: ClientTls | None = None) -> bool:
    """Whether ``target`` reports ``service`` SERVING (over TLS with ``tls``: a server that
    requires mutual TLS refuses a plaintext probe, as it refuses any plaintext caller)."""
    with blocking_channel(target, tls) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout
            )
        except grpc.RpcError:
            return False
    return reply.status == health_pb2.HealthCheckResponse.SERVING


def main(argv: list[str]) -> int:
    if not 1 <= len(argv) <= 2:
        print("usage: python -m libs.rpc.healthcheck HOST:PORT [SERVICE]", file=sys.stderr)
        return 2
    # A probe of a service that requires mutual TLS holds a certificate too (AIF_CLIENT_TLS_*).
    from libs.auth.tls import env_client_tls

    ok = check(argv[0], argv[1] if len(argv) == 2 else "", tls=env_client_tls())
    print("SERVING" if ok else "NOT_SERVING")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
