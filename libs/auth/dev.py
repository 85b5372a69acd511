"""Development credentials in one folder: the token key pair, revocation list, privacy salt.

Used by ``aif token``, the stack supervisor (``make demo``) and tests. This folder holds the
signing (private) key and stays with whoever issues tokens; a service is given only its
own folder (:meth:`DevAuth.mint_service`: ``services/<name>/`` with the public key, the
revocation list and its token), as a Kubernetes Secret would mount it. Production keeps
the private key with an identity provider.
"""

from __future__ import annotations

import os
import secrets
import shutil
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
# Per-service credential folders (:meth:`DevAuth.mint_service`), under the issuer's folder.
SERVICES_DIR = "services"
TOKEN_FILE = "token"
SERVICE_TOKEN_TTL_S = 7 * 24 * 3600


def _write(path: Path, data: bytes, mode: int) -> None:
    """Replace ``path`` whole (a reader sees the old file or the new one, never half)."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")  # two minters never share one
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


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

    def env(self, directory: Path | None = None) -> dict[str, str]:
        """Environment that makes a service verify tokens with the public key in
        ``directory`` (a service's own folder, :meth:`mint_service`; default this one)."""
        return {
            "AIF_AUTH_MODE": "jwt",
            "AIF_AUTH_DIR": str(directory or self.directory),
            "AIF_AUTH_ISSUER": self.issuer,
            "AIF_AUTH_AUDIENCE": self.audience,
            "AIF_PRIVACY_SALT": (self.directory / SALT_FILE).read_text().strip(),
        }

    def service_dir(self, name: str) -> Path:
        """Where :meth:`mint_service` puts service ``name``'s credentials."""
        return self.directory / SERVICES_DIR / name

    def mint_service(
        self,
        name: str,
        roles: Mapping[str, Iterable[str]] | None = None,
        ttl_seconds: float = SERVICE_TOKEN_TTL_S,
    ) -> Path:
        """Service ``name``'s own folder, all a host running it is given: the public key,
        the revocation list and, with ``roles``, its token (``token``, 0600), re-minted on
        each call. Never the private key, which stays with the issuer (this object).

        The revocation list is this folder's own hard link to the issuer's, as one
        published list mounted into every pod: a revocation reaches every service at once.
        """
        self.ensure()
        folder = self.service_dir(name)
        folder.mkdir(parents=True, exist_ok=True)
        os.chmod(folder, 0o700)
        _write(folder / PUBLIC_KEY_FILE, self.public_key.read_bytes(), 0o644)
        central = self.directory / REVOKED_FILE
        central.touch(exist_ok=True)
        linked = folder / REVOKED_FILE
        if not (linked.exists() and os.path.samefile(linked, central)):
            linked.unlink(missing_ok=True)
            try:
                os.link(central, linked)
            except FileExistsError:  # another minter linked it in the meantime
                pass
            except OSError:  # another file system: a copy (revocations then need a re-mint)
                shutil.copyfile(central, linked)
        token = folder / TOKEN_FILE
        if roles is None:
            token.unlink(missing_ok=True)
        else:
            _write(token, self.issue(f"svc-{name}", roles, ttl_seconds).encode(), 0o600)
        return folder

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
