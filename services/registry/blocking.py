"""Running the synchronous core from asyncio, with database outages as ``Unavailable``."""
from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from sqlalchemy.exc import InterfaceError, OperationalError

from libs.errors import Unavailable

P = ParamSpec("P")
T = TypeVar("T")


async def offload(fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """``fn`` in a worker thread (the caller's context, so ``current_principal``, goes along).

    A database that is down or locked becomes ``Unavailable``: RPC callers may retry, and
    event consumers retry the event instead of dead-lettering it.
    """
    try:
        return await asyncio.to_thread(fn, *args, **kwargs)
    except (OperationalError, InterfaceError) as exc:
        raise Unavailable(f"registry database unavailable: {exc.orig or exc}") from exc
