"""Development credentials in one folder: the token key pair, revocation list, privacy salt.

Used by ``aif token``, the stack supervisor (``make demo``) and tests: services get
``AIF_AUTH_DIR`` pointing here and read only the public key; callers mint tokens
with :meth:`DevAuth.issue`. Production keeps the private key with an identity
provider and gives services only the public key.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from libs.auth.revocation import RevocationList
from libs.auth.tokens import (
    PRIVATE_KEY_FILE,
    PUBLIC_KEY_FILE,
    REVOKED_FILE,
    TokenIssuer,
    generate_keypair,
    load_private_key,
)
from libs.settings import DEFAULT_AUDIENCE, DEFAULT_AUTH_DIR, DEFAULT_ISSUER

SALT_FILE = "privacy_salt"


def auth_dir_from_env() -> Path:
    """``AIF_AUTH_DIR`` or ``build/auth``: the same folder services read."""
    return Path(os.environ.get("AIF_AUTH_DIR") or DEFAULT_AUTH_DIR).resolve()


@dataclass(frozen=True)
class DevAuth:
    directory: Path
    issuer: str = DEFAULT_ISSUER
    audience: str = DEFAULT_AUDIENCE

    @classmethod
    def default(cls) -> DevAuth:
        return cls(auth_dir_from_env())

    @property
    def public_key(self) -> Path:
        return self.directory / PUBLIC_KEY_FILE

    @property
    def revocations(self) -> RevocationList:
        return RevocationList(self.directory / REVOKED_FILE)

    def ensure(self) -> DevAuth:
        """Creates the key pair and the privacy salt when missing; keeps existing ones."""
        if not (self.directory / PRIVATE_KEY_FILE).exists():
            generate_keypair(self.directory)
        salt = self.directory / SALT_FILE
        if not salt.exists():
            fd = os.open(salt, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_hex(32))
        return self

    def env(self) -> dict[str, str]:
        """Environment that makes a service verify tokens from this folder."""
        return {
            "AIF_AUTH_MODE": "jwt",
            "AIF_AUTH_DIR": str(self.directory),
            "AIF_AUTH_ISSUER": self.issuer,
            "AIF_AUTH_AUDIENCE": self.audience,
            "AIF_PRIVACY_SALT": (self.directory / SALT_FILE).read_text().strip(),
        }

    def token_issuer(self) -> TokenIssuer:
        return TokenIssuer(
            load_private_key(self.directory / PRIVATE_KEY_FILE), issuer=self.issuer, audience=self.audience
        )

    def issue(self, subject: str, roles: Mapping[str, Iterable[str]], ttl_seconds: float = 3600) -> str:
        return self.token_issuer().issue(subject, roles, ttl_seconds)

    def metadata(
        self, subject: str = "dev-admin", roles: Mapping[str, Iterable[str]] | None = None
    ) -> tuple[tuple[str, str], ...]:
        """gRPC call metadata carrying a fresh token (admin for every use case by default)."""
        token = self.issue(subject, roles or {"*": ["admin"]}, ttl_seconds=600)
        return (("authorization", f"Bearer {token}"),)
