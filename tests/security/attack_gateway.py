"""The gateway the serving and input attack suites aim at: JWT on, a static champion,
its own topics, on a Triton of the suite's own."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from libs.auth import DevAuth
from tests.gateway_support import RunningGateway, gateway_settings, start_gateway

UC = "loan_approval"


async def jwt_gateway(
    triton: Any,
    kafka: Any,
    new_topic: Callable[[str], Awaitable[str]],
    auth: DevAuth,
    salt: str,
    **extra: Any,
) -> AsyncIterator[RunningGateway]:
    """Yields the running gateway (its settings on ``.settings``) once the champion loaded."""
    settings = gateway_settings(
        triton.grpc_url,
        kafka.bootstrap_servers,
        auth_mode="jwt",
        auth_dir=auth.directory,
        auth_issuer=auth.issuer,
        auth_audience=auth.audience,
        privacy_salt=salt,
        static_aliases=f"{UC}:champion=1",
        predictions_topic=await new_topic("attack.predictions"),
        feedback_topic=await new_topic("attack.feedback"),
        model_promoted_topic=await new_topic("attack.promoted"),
        **extra,
    )
    gw = await start_gateway(settings)
    gw.settings = settings  # type: ignore[attr-defined]
    # Loading the python backend's stub takes long on a busy machine: wait for it.
    assert await gw.service.models.wait_idle(240), "the champion did not load"
    yield gw
    await gw.stop()
