"""Personal data out of logs, traces and the prediction log: hashed or dropped, as the spec says.

A use case's spec names its personal fields and a policy: ``hash`` replaces a
value with a keyed hash (HMAC-SHA-256 with the ``privacy_salt`` setting, hex,
truncated), so equal values still join but cannot be looked up in a dictionary
without the salt; ``drop`` removes the field. Fields are matched by name at any
depth of nested mappings and lists, since a record's fields appear nested in
predictions and events.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Collection, Mapping
from datetime import datetime
from enum import StrEnum
from typing import Any

from libs.errors import ConfigError
from libs.settings import ServiceSettings

DEFAULT_HASH_CHARS = 16  # 64 bits: collisions are negligible for joins, short in logs


class PiiPolicy(StrEnum):
    HASH = "hash"
    DROP = "drop"


def pseudonym(value: Any, salt: bytes, chars: int = DEFAULT_HASH_CHARS) -> str:
    """The keyed hash of ``value``'s text form, truncated to ``chars`` hex characters.

    Text form as ingestion's (``services/ingestion/pii.py``): ISO 8601 for timestamps,
    JSON for mappings and lists, ``str`` otherwise, so a value hashed here is a prefix
    of the same value's hash in the records topic, and logs still join with data.
    """
    if isinstance(value, datetime):
        text = value.isoformat()
    elif isinstance(value, Mapping | list | tuple):
        text = json.dumps(value, sort_keys=True, default=str)
    else:
        text = str(value)
    return hmac.new(salt, text.encode("utf-8"), hashlib.sha256).hexdigest()[:chars]


class PiiRedactor:
    """Redacts the fields ``fields`` of dicts with ``policy``."""

    def __init__(
        self,
        fields: Collection[str],
        policy: PiiPolicy | str,
        salt: str | bytes = b"",
        *,
        chars: int = DEFAULT_HASH_CHARS,
    ) -> None:
        self.fields = frozenset(fields)
        self.policy = PiiPolicy(policy)
        self._salt = salt.encode() if isinstance(salt, str) else salt
        if self.policy is PiiPolicy.HASH and self.fields and not self._salt:
            # An unsalted hash of an email or a name is reversible by trying candidates.
            raise ConfigError("AIF_PRIVACY_SALT must be set to hash personal fields")
        if not 8 <= chars <= 64:
            raise ConfigError(f"hash length {chars} must be between 8 and 64 hex characters")
        self._chars = chars

    @classmethod
    def from_settings(
        cls, settings: ServiceSettings, fields: Collection[str], policy: PiiPolicy | str
    ) -> PiiRedactor:
        return cls(fields, policy, settings.privacy_salt.get_secret_value())

    def redact(self, data: Mapping[str, Any]) -> dict[str, Any]:
        """A redacted deep copy of ``data``; ``data`` itself is not changed."""
        return self._mapping(data)

    def _mapping(self, data: Mapping[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in data.items():
            if key in self.fields:
                if self.policy is PiiPolicy.DROP:
                    continue
                out[key] = None if value is None else pseudonym(value, self._salt, self._chars)
            else:
                out[key] = self._value(value)
        return out

    def _value(self, value: Any) -> Any:
        if isinstance(value, Mapping):
            return self._mapping(value)
        if isinstance(value, list | tuple):
            return [self._value(v) for v in value]
        return value


def redact_pii(
    data: Mapping[str, Any], fields: Collection[str], policy: PiiPolicy | str, salt: str | bytes
) -> dict[str, Any]:
    """One-off form of :class:`PiiRedactor`."""
    return PiiRedactor(fields, policy, salt).redact(data)
