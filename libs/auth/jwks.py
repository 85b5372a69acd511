"""Token verification keys as a JWKS document (RFC 7517), selected by each token's ``kid``.

The document is what an OIDC identity provider publishes at its ``jwks_uri``; in
development ``aif token keygen`` / ``aif token rotate`` write it (``jwks.json``). Only
Ed25519 keys (``kty: OKP, crv: Ed25519``) are taken: others an IdP may list (RSA, EC)
are skipped, as tokens signed with them would be refused anyway (EdDSA only).

Rotation without a restart: a file is re-read whenever its modification time, size or
inode changes (a stat a call, as the revocation list); a URL is fetched again every
``refresh_s`` seconds and on a ``kid`` it does not know (at most every
``min_refetch_s``, so a stream of forged ``kid`` values cannot make the service hammer
the IdP). A key removed from the document stops verifying once the document is re-read.
Called on a running event loop (token checks in the async services), a URL is never
fetched inline: the fetch runs in a background thread, one at a time, and the call goes on
with the keys it has (a kid still unknown is refused now and verifies once the fetch has
landed), so a slow or stalled IdP never stalls the loop. Off the loop (threads, the CLI)
the fetch happens in the call, as before.
A document that becomes unreadable or invalid keeps the last good keys (an IdP outage
must not lock every caller out); one that cannot be read at start is a ``ConfigError``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import os
import threading
import time
import urllib.request
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from libs.errors import ConfigError, Unauthenticated

log = logging.getLogger(__name__)

JWKS_FILE = "jwks.json"
# A JWKS holds a handful of keys; a larger document is refused unparsed.
MAX_JWKS_BYTES = 256 * 1024


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(key: Ed25519PublicKey) -> str:
    """The key's RFC 7638 thumbprint: the same key always has the same id, on any host."""
    canonical = json.dumps(
        {"crv": "Ed25519", "kty": "OKP", "x": _b64(raw_public(key))}, separators=(",", ":"), sort_keys=True
    )
    return _b64(hashlib.sha256(canonical.encode()).digest())


def jwk(key: Ed25519PublicKey) -> dict[str, str]:
    """The public key as a JWK, with its thumbprint as ``kid``."""
    return {
        "kty": "OKP",
        "crv": "Ed25519",
        "x": _b64(raw_public(key)),
        "kid": key_id(key),
        "alg": "EdDSA",
        "use": "sig",
    }


def jwks_document(keys: Iterable[Ed25519PublicKey]) -> bytes:
    return (json.dumps({"keys": [jwk(k) for k in keys]}, indent=2) + "\n").encode()


def parse_jwks(data: bytes) -> dict[str, Ed25519PublicKey]:
    """``kid`` → key of every usable Ed25519 signing key; ValueError when not a JWKS."""
    if len(data) > MAX_JWKS_BYTES:
        raise ValueError(f"JWKS larger than {MAX_JWKS_BYTES} bytes")
    doc = json.loads(data)
    entries = doc.get("keys") if isinstance(doc, dict) else None
    if not isinstance(entries, list):
        raise ValueError("not a JWKS document (no 'keys' list)")
    keys: dict[str, Ed25519PublicKey] = {}
    for entry in entries:
        if not isinstance(entry, Mapping) or entry.get("kty") != "OKP" or entry.get("crv") != "Ed25519":
            continue
        if entry.get("use", "sig") != "sig" or entry.get("alg", "EdDSA") != "EdDSA":
            continue
        kid, x = entry.get("kid"), entry.get("x")
        if not isinstance(kid, str) or not kid or not isinstance(x, str):
            continue  # a key without an id could never be selected
        keys[kid] = Ed25519PublicKey.from_public_bytes(_unb64(x))
    return keys


def _on_event_loop() -> bool:
    """Whether the calling thread is running an asyncio event loop (which must not block)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class KeySet:
    """Verification keys by ``kid``. :meth:`get` raises ``Unauthenticated`` (``unknown_kid``)."""

    def get(self, kid: str) -> Ed25519PublicKey:
        raise NotImplementedError


class StaticKeys(KeySet):
    """A fixed set (one PEM public key, tests): never re-read."""

    def __init__(self, keys: Iterable[Ed25519PublicKey]) -> None:
        self._keys = {key_id(k): k for k in keys}

    def get(self, kid: str) -> Ed25519PublicKey:
        key = self._keys.get(kid)
        if key is None:
            raise Unauthenticated(f"no key {kid!r}", reason="unknown_kid")
        return key


class JwksKeys(KeySet):
    """Keys from a JWKS file or an ``http(s)://`` URL, re-read as the module docstring says."""

    def __init__(
        self,
        source: str | Path,
        *,
        refresh_s: float = 300.0,
        min_refetch_s: float = 5.0,
        fetch_timeout_s: float = 5.0,
    ) -> None:
        text = str(source)
        self._url = text if text.startswith(("http://", "https://")) else None
        self._path = None if self._url else Path(text)
        self._file = None if self._url else os.fspath(text)  # stat on a str: no pathlib per call
        self._refresh_s, self._min_refetch_s, self._timeout = refresh_s, min_refetch_s, fetch_timeout_s
        # ``_lock`` guards the keys and stamps and is never held over I/O (an event loop
        # takes it); ``_io_lock`` makes URL fetches one at a time.
        self._lock = threading.Lock()
        self._io_lock = threading.Lock()
        self._fetching = False  # a background fetch is in flight
        self._stamp: tuple[int, int, int] | None = None
        self._fetched = float("-inf")
        self._read_stamp: tuple[int, int, int] | None = None  # of the last read, not yet taken
        try:
            self._keys = self._read()
            self._stamp = self._read_stamp
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read the token keys (JWKS) at {text}: {exc}") from None
        if not self._keys:
            raise ConfigError(f"the JWKS at {text} holds no Ed25519 signing key with a kid")

    @property
    def source(self) -> str:
        return self._url or str(self._path)

    def _read(self) -> dict[str, Ed25519PublicKey]:
        if self._path is not None:
            st = os.stat(self._path)
            keys = parse_jwks(self._path.read_bytes())
            self._read_stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
            return keys
        self._fetched = time.monotonic()
        return self._fetch()

    def _fetch(self) -> dict[str, Ed25519PublicKey]:
        assert self._url is not None
        with urllib.request.urlopen(self._url, timeout=self._timeout) as reply:  # noqa: S310 - http(s) only
            return parse_jwks(reply.read(MAX_JWKS_BYTES + 1))

    def _stale(self, unknown_kid: bool) -> bool:
        if self._file is not None:
            try:
                st = os.stat(self._file)
            except OSError:
                return False  # keep the last good keys
            return (st.st_mtime_ns, st.st_size, st.st_ino) != self._stamp
        age = time.monotonic() - self._fetched
        return age >= self._refresh_s or (unknown_kid and age >= self._min_refetch_s)

    def _take(self, keys: dict[str, Ed25519PublicKey]) -> None:
        if keys != self._keys:
            log.info("token keys at %s: %s", self.source, ", ".join(sorted(keys)) or "none")
        self._keys = keys

    def _refresh(self, unknown_kid: bool) -> None:
        if self._path is not None:  # a local file: a stat and a small read, done in the call
            if not self._stale(unknown_kid):
                return  # the common case, without the lock
            with self._lock:
                if not self._stale(unknown_kid):
                    return
                try:
                    keys = self._read()
                except (OSError, ValueError) as exc:
                    log.warning(
                        "token keys at %s not re-read (%s); keeping the last good ones", self.source, exc
                    )
                    return
                self._take(keys)
                # After the keys: a caller that finds this stamp without the lock has them.
                self._stamp = self._read_stamp
            return
        if _on_event_loop():
            with self._lock:
                if self._fetching or not self._stale(unknown_kid):
                    return
                # Counted from the start, so a flood of unknown kids meanwhile starts no other.
                self._fetching, self._fetched = True, time.monotonic()
            threading.Thread(target=self._fetch_in_background, name="jwks-fetch", daemon=True).start()
            return
        with self._io_lock:
            with self._lock:
                if not self._stale(unknown_kid):
                    return  # fetched while this call waited for the one before
                self._fetched = time.monotonic()
            self._fetch_and_take()

    def _fetch_in_background(self) -> None:
        try:
            with self._io_lock:
                self._fetch_and_take()
        finally:
            with self._lock:
                self._fetching = False

    def _fetch_and_take(self) -> None:
        """Fetches the URL (no lock over the round trip) and takes the keys it holds."""
        try:
            keys = self._fetch()
        except (OSError, ValueError) as exc:
            log.warning("token keys at %s not re-read (%s); keeping the last good ones", self.source, exc)
            return
        with self._lock:
            self._take(keys)

    def get(self, kid: str) -> Ed25519PublicKey:
        self._refresh(unknown_kid=False)
        key = self._keys.get(kid)
        if key is None:
            self._refresh(unknown_kid=True)
            key = self._keys.get(kid)
        if key is None:
            raise Unauthenticated(f"no key {kid!r} in {self.source}", reason="unknown_kid")
        return key

    def kids(self) -> frozenset[str]:
        return frozenset(self._keys)


def keys_of(value: Any) -> KeySet:
    """A :class:`KeySet` as given, or a fixed one around a bare public key."""
    if isinstance(value, KeySet):
        return value
    if isinstance(value, Ed25519PublicKey):
        return StaticKeys([value])
    raise TypeError(f"not a key set or an Ed25519 public key: {type(value).__name__}")
