"""Personal data never leaves ingestion in clear.

A field marked ``pii: hash`` is replaced by HMAC-SHA256 of its value keyed with the
privacy salt (a salted SHA-256 that cannot be recomputed without the salt), as lower-case
hex; ``pii: drop`` removes the field. The same masking is applied to the records topic
and to the raw dataset, so no downstream consumer and no dataset reader sees the clear
value, while equal values still hash equal (joins and counts keep working). Checks
run on the clear value first (a hashed name has no meaningful length).

Dead letters keep the payload as received so it can be repaired and replayed, with the
same masking (:meth:`Privacy.redact_payload`): a field marked ``hash`` carries its hash,
a ``drop`` field is gone, and a payload that cannot be read to mask it (not JSON, not a
Record, cut at the dead-letter cap) is not kept at all where the use case has personal
fields. There is no built-in key: a service that hashes refuses to start without one
(``AIF_PRIVACY_SALT``), as a published default key would make every hash reversible.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import datetime
from typing import Any

from google.protobuf.message import DecodeError

from aifactory.common.v1 import common_pb2
from libs.errors import ConfigError
from libs.usecase import UseCase

NO_KEY = "AIF_PRIVACY_SALT must be set: ingestion hashes personal fields with it (there is no default key)"


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
        if not salt:
            raise ConfigError(NO_KEY)
        self._rules = usecase.pii_fields()
        self._hash = _keyed(salt)

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

    def redact_payload(self, payload: bytes, media_type: str, complete: bool = True) -> bytes:
        """A dead letter's copy of ``payload`` with the personal fields masked as in
        :meth:`mask`; ``b""`` when the use case has personal fields and the payload cannot
        be read to mask them (``complete`` False: only its first bytes are kept)."""
        if not self._rules:
            return payload
        if not complete:
            return b""
        if media_type == "application/x-protobuf":
            record = common_pb2.Record()
            try:
                record.ParseFromString(payload)
            except DecodeError:
                return b""
            for name, rule in self._rules.items():
                if name not in record.fields:
                    continue
                if rule == "drop":
                    del record.fields[name]
                else:
                    value = record.fields[name]
                    kind = value.WhichOneof("kind")
                    if kind not in (None, "null_value"):
                        value.string_value = self._hash(getattr(value, kind))
            return record.SerializeToString()
        try:
            value = json.loads(payload)
        except (ValueError, RecursionError):
            return b""
        if not isinstance(value, dict):
            return payload  # no fields, nothing personal by name
        return json.dumps(self.mask(value), default=str).encode()

    def kept_type(self, name: str, declared: str) -> str | None:
        """The type a field has after masking: None when dropped, string when hashed."""
        rule = self._rules.get(name)
        if rule == "drop":
            return None
        return "string" if rule == "hash" else declared
