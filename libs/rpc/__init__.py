"""gRPC plumbing shared by every service: server bootstrap, interceptor, auth hook, client channel."""

from __future__ import annotations

from libs.rpc.auth import (
    ANONYMOUS,
    AllowAll,
    Authenticator,
    Authorizer,
    Principal,
    ServerSecurity,
    ServerTls,
    current_principal,
)
from libs.rpc.client import ClientTls, blocking_channel, channel, insecure_channel, secure_channel
from libs.rpc.server import RpcServer, serve

__all__ = [
    "ANONYMOUS",
    "AllowAll",
    "Authenticator",
    "Authorizer",
    "ClientTls",
    "Principal",
    "RpcServer",
    "ServerSecurity",
    "ServerTls",
    "blocking_channel",
    "channel",
    "current_principal",
    "insecure_channel",
    "secure_channel",
    "serve",
]
