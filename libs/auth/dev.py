"""Development credentials in one folder: the token key pair, the published verification
keys (``jwks.json``), the revocation list, the privacy salt.

Used by ``aif token``, the stack supervisor (``make demo``) and tests. This folder holds the
signing (private) key and stays with whoever issues tokens; a service is given only its
own folder (:meth:`DevAuth.mint_service`: ``services/<name>/`` with the public keys, the
revocation list and its token), as a Kubernetes Secret would mount it. Production keeps
the private key with an identity provider, whose JWKS the services read instead.

Key rotation (:meth:`DevAuth.rotate`): a new key pair signs from then on; the JWKS keeps
the old public key beside the new one, so tokens signed before still verify until
:meth:`DevAuth.retire` drops it (once they have expired: an hour for services' tokens).
Every service folder gets the new JWKS at once and its verifier re-reads it on the next
call: no restart.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from libs.auth.jwks import JWKS_FILE, jwks_document, key_id, parse_jwks
from libs.auth.permissions import SERVICE_PREFIX, service_role
from libs.auth.revocation import RevocationList
from libs.auth.tokens import (
    PRIVATE_KEY_FILE,
    PUBLIC_KEY_FILE,
    REVOKED_FILE,
    TokenIssuer,
    generate_keypair,
    load_private_key,
    load_public_key,
)
from libs.errors import InvalidArgument
from libs.settings import DEFAULT_AUDIENCE, DEFAULT_AUTH_DIR, DEFAULT_ISSUER

SALT_FILE = "privacy_salt"
# Per-service credential folders (:meth:`DevAuth.mint_service`), under the issuer's folder.
SERVICES_DIR = "services"
TOKEN_FILE = "token"
# Services' tokens are short-lived: whoever mints them re-mints them well before expiry
# (aif.stack refreshes each at a third of its life) and services re-read the file.
SERVICE_TOKEN_TTL_S = 3600


def service_subject(name: str) -> str:
    """The principal of service ``name`` (also the name of its one role)."""
    return SERVICE_PREFIX + name


def service_grants(name: str) -> dict[str, list[str]]:
    """Service ``name``'s grants: its own role, for every use case."""
    return {"*": [service_role(name).value]}


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
    def jwks(self) -> Path:
        return self.directory / JWKS_FILE

    @property
    def revocations(self) -> RevocationList:
        return RevocationList(self.directory / REVOKED_FILE)

    def ensure(self) -> DevAuth:
        """Creates the key pair, the JWKS, the (empty) revocation list and the privacy salt
        when missing; keeps existing ones."""
        if not (self.directory / PRIVATE_KEY_FILE).exists():
            generate_keypair(self.directory)
        if not self.jwks.exists():
            _write(self.jwks, jwks_document([load_public_key(self.public_key)]), 0o644)
        # Verifiers fail closed without it: an empty list is "nothing revoked".
        (self.directory / REVOKED_FILE).touch(exist_ok=True)
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

    def published_kids(self) -> list[str]:
        """The ids of the keys in the JWKS, newest first."""
        return list(parse_jwks(self.jwks.read_bytes()))

    def rotate(self) -> str:
        """A new signing key; the JWKS keeps the old public keys (tokens signed with them
        verify until :meth:`retire`). Publishes the JWKS to every service folder. Returns
        the new key's id."""
        self.ensure()
        old = parse_jwks(self.jwks.read_bytes())
        generate_keypair(self.directory, overwrite=True)
        new = load_public_key(self.public_key)
        keys = [new, *(k for kid, k in old.items() if kid != key_id(new))]  # newest first
        self._publish(jwks_document(keys))
        return key_id(new)

    def retire(self, kid: str) -> None:
        """Drops key ``kid`` from the JWKS (tokens it signed are refused from the next call);
        the current signing key cannot be retired."""
        self.ensure()
        current = key_id(load_public_key(self.public_key))
        if kid == current:
            raise InvalidArgument("kid", f"{kid} is the current signing key: rotate first")
        keys = parse_jwks(self.jwks.read_bytes())
        if kid not in keys:
            raise InvalidArgument("kid", f"no key {kid} in {self.jwks}")
        self._publish(jwks_document(k for k_id, k in keys.items() if k_id != kid))

    def _publish(self, document: bytes) -> None:
        """The JWKS here and in every service folder, each replaced whole (a new inode: the
        verifiers' stat sees it), with the current public key beside it."""
        _write(self.jwks, document, 0o644)
        services = self.directory / SERVICES_DIR
        for folder in sorted(services.iterdir()) if services.is_dir() else []:
            if folder.is_dir():
                _write(folder / JWKS_FILE, document, 0o644)
                _write(folder / PUBLIC_KEY_FILE, self.public_key.read_bytes(), 0o644)

    def service_dir(self, name: str) -> Path:
        """Where :meth:`mint_service` puts service ``name``'s credentials."""
        return self.directory / SERVICES_DIR / name

    def mint_service(
        self,
        name: str,
        roles: Mapping[str, Iterable[str]] | None = None,
        ttl_seconds: float = SERVICE_TOKEN_TTL_S,
    ) -> Path:
        """Service ``name``'s own folder, all a host running it is given: the public keys
        (``jwks.json``, and the current one as PEM), the revocation list and, with ``roles``,
        its token (``token``, 0600; subject ``svc-<name>``), re-minted on each call. Never
        the private key, which stays with the issuer (this object).

        The revocation list is this folder's own hard link to the issuer's, as one
        published list mounted into every pod: a revocation reaches every service at once.
        """
        self.ensure()
        folder = self.service_dir(name)
        folder.mkdir(parents=True, exist_ok=True)
        os.chmod(folder, 0o700)
        _write(folder / PUBLIC_KEY_FILE, self.public_key.read_bytes(), 0o644)
        _write(folder / JWKS_FILE, self.jwks.read_bytes(), 0o644)
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
            _write(token, self.issue(service_subject(name), roles, ttl_seconds).encode(), 0o600)
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
