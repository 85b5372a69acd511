"""JWKS from a URL: a slow identity provider never stalls the event loop that verifies tokens."""

from __future__ import annotations

import asyncio
import http.server
import threading
import time
from collections.abc import Iterator

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from libs.auth.jwks import JwksKeys, jwks_document, key_id
from libs.errors import Unauthenticated

# An IdP round trip this slow must cost the loop nothing; a loop that waited on it would
# lag by about that much.
SLOW_S = 1.0
MAX_LAG_S = 0.1


class _SlowIdp:
    """Serves ``document``; sleeps ``delay_s`` before each answer; counts fetches."""

    def __init__(self, document: bytes) -> None:
        idp = self
        self.document, self.delay_s, self.fetches = document, 0.0, 0

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                idp.fetches += 1
                time.sleep(idp.delay_s)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(idp.document)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/jwks"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def idp() -> Iterator[_SlowIdp]:
    server = _SlowIdp(jwks_document([Ed25519PrivateKey.generate().public_key()]))
    try:
        yield server
    finally:
        server.close()


async def _max_lag(stop: asyncio.Event) -> float:
    """The longest a 10 ms sleep overran while ``stop`` was unset (the loop's lag)."""
    worst = 0.0
    while not stop.is_set():
        start = time.monotonic()
        await asyncio.sleep(0.01)
        worst = max(worst, time.monotonic() - start - 0.01)
    return worst


async def test_an_unknown_kid_on_the_loop_fetches_in_the_background(idp: _SlowIdp) -> None:
    keys = JwksKeys(idp.url, refresh_s=300, min_refetch_s=0.3)
    added = Ed25519PrivateKey.generate().public_key()
    idp.document, idp.delay_s = jwks_document([added]), SLOW_S
    await asyncio.sleep(0.35)  # past min_refetch_s: the next unknown kid may fetch
    fetched = idp.fetches
    stop = asyncio.Event()
    lag = asyncio.create_task(_max_lag(stop))
    refused = 0
    start = time.monotonic()
    # A flood of unknown kids during the slow fetch: each refused at once, and one fetch at a
    # time (else one each min_refetch_s: five in this while).
    while time.monotonic() - start < SLOW_S * 1.5:
        with pytest.raises(Unauthenticated):
            keys.get(f"forged-{refused}")
        refused += 1
        await asyncio.sleep(0.02)
    stop.set()
    assert await lag < MAX_LAG_S, f"the loop lagged {await lag:.3f} s behind a slow JWKS fetch"
    assert 1 <= idp.fetches - fetched <= 2, f"{idp.fetches - fetched} fetches for {refused} unknown kids"
    # The first fetch has landed: the IdP's new key verifies.
    assert keys.get(key_id(added)) is not None


def test_off_the_loop_an_unknown_kid_is_fetched_in_the_call(idp: _SlowIdp) -> None:
    keys = JwksKeys(idp.url, refresh_s=300, min_refetch_s=0.0)
    added = Ed25519PrivateKey.generate().public_key()
    idp.document = jwks_document([added])
    assert keys.get(key_id(added)) is not None  # a thread may wait: fetched inline
