"""Personal data never leaves ingestion in clear.

A field marked ``pii: hash`` is replaced by HMAC-SHA256 of its value keyed with the
privacy salt (a salted SHA-256 that cannot be recomputed without the salt), as lower-case
hex; ``pii: drop`` removes the field. The same masking is applied to the records topic
and to the raw dataset, so no downstream consumer and no dataset reader sees the clear
value, while equal values still hash equal (joins and counts keep working). Checks
run on the clear value first (a hashed name has no meaningful length).

The dead-letter topic is the exception: it keeps the payload exactly as received so
it can be repaired and replayed; treat it as restricted.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime
from typing import Any

from libs.usecase import UseCase

# Used only when no salt is configured (development); production sets AIF_PRIVACY_SALT.
DEV_SALT = b"aifactory-dev-privacy-salt"


def pseudonym(value: Any, salt: bytes) -> str:
    """Salted hash of ``value``'s text form (timestamps in ISO 8601)."""
    return _keyed(salt)(value)


def _keyed(salt: bytes) -> Any:
    """``pseudonym`` with the key schedule done once (copying an HMAC is cheaper than making one)."""
    base = hmac.new(salt, digestmod=hashlib.sha256)

    def hash_(value: Any) -> str:
        text = value.isoformat() if isinstance(value, datetime) else str(value)
        mac = base.copy()
        mac.update(text.encode("utf-8"))
        return mac.hexdigest()

    return hash_


class Privacy:
    """Applies one use case's ``pii`` rules to typed field values."""

    def __init__(self, usecase: UseCase, salt: bytes) -> None:
        self._rules = usecase.pii_fields()
        self._hash = _keyed(salt or DEV_SALT)

    @property
    def active(self) -> bool:
        return bool(self._rules)

    def mask(self, values: dict[str, Any]) -> dict[str, Any]:
        """A copy of ``values`` with hashed fields hashed and dropped fields removed."""
        if not self._rules:
            return values
        masked = dict(values)
        for name, rule in self._rules.items():
            if rule == "drop":
                masked.pop(name, None)
            elif masked.get(name) is not None:
                masked[name] = self._hash(masked[name])
        return masked

    def kept_type(self, name: str, declared: str) -> str | None:
        """The type a field has after masking: None when dropped, string when hashed."""
        rule = self._rules.get(name)
        if rule == "drop":
            return None
        return "string" if rule == "hash" else declared
