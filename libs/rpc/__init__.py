"""gRPC plumbing shared by every service: server bootstrap, interceptor, auth hook, client channel."""
from __future__ import annotations

from libs.rpc.auth import ANONYMOUS, AllowAll, Authenticator, Principal, current_principal
from libs.rpc.client import insecure_channel
from libs.rpc.server import RpcServer, serve

__all__ = [
    "ANONYMOUS",
    "AllowAll",
    "Authenticator",
    "Principal",
    "RpcServer",
    "current_principal",
    "insecure_channel",
    "serve",
]
