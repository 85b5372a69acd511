"""Mutual TLS between services: a development CA, per-service certificates, and the
server/client TLS configurations built from settings.

``aif token certs`` writes ``ca.pem`` (and ``ca.key``, 0600) and, per service,
``<name>.pem`` / ``<name>.key``. Each service certificate names the service,
``localhost`` and ``127.0.0.1``, and may serve both ends of a call (server and
client auth), so one file pair per service is enough.

:func:`server_tls` (``tls_*`` settings) secures a service's port; :func:`client_tls`
(``client_tls_*``) its calls to the others, through ``libs.rpc.channel``;
:func:`env_client_tls` the calls of a command-line caller. :class:`DevPki` is what the
stack (``AIF_STACK_TLS=mtls``) gives each service and each of its callers.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from libs.errors import ConfigError
from libs.rpc.auth import ServerTls
from libs.rpc.client import ClientTls
from libs.settings import ClientSettings, ServiceSettings

CA_CERT, CA_KEY = "ca.pem", "ca.key"
DEV_VALIDITY = dt.timedelta(days=365)


@dataclass(frozen=True)
class CertFiles:
    cert: Path
    key: Path


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
    os.chmod(path, 0o600)


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "AI Factory (development)"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def create_ca(directory: Path, *, overwrite: bool = False) -> CertFiles:
    """A self-signed development CA (kept when present unless ``overwrite``)."""
    files = CertFiles(directory / CA_CERT, directory / CA_KEY)
    if files.cert.exists() and files.key.exists() and not overwrite:
        return files
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    name = _name("AI Factory dev CA")
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + DEV_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    _write_key(files.key, key)
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return files


def issue_cert(
    directory: Path,
    name: str,
    *,
    hosts: Iterable[str] = ("localhost", "127.0.0.1"),
    ca: CertFiles | None = None,
) -> CertFiles:
    """A certificate for ``name`` signed by the CA in ``directory``: ``<name>.pem``/``<name>.key``."""
    ca = ca or CertFiles(directory / CA_CERT, directory / CA_KEY)
    ca_cert = x509.load_pem_x509_certificate(ca.cert.read_bytes())
    ca_key = serialization.load_pem_private_key(ca.key.read_bytes(), password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise ConfigError(f"{ca.key} is not an EC private key")
    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = [x509.DNSName(name)]
    for host in hosts:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            sans.append(x509.DNSName(host))
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + DEV_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    files = CertFiles(directory / f"{name}.pem", directory / f"{name}.key")
    directory.mkdir(parents=True, exist_ok=True)
    _write_key(files.key, key)
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return files


def _read(path: str, setting: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"{setting}: cannot read {path}: {exc.strerror}") from None


def server_tls(settings: ServiceSettings) -> ServerTls | None:
    """TLS for the service's gRPC port from ``tls_cert``/``tls_key``/``tls_client_ca``; None: plaintext."""
    if not (settings.tls_cert or settings.tls_key or settings.tls_client_ca):
        return None
    if not (settings.tls_cert and settings.tls_key):
        raise ConfigError(
            "AIF_TLS_CERT and AIF_TLS_KEY must be set together (AIF_TLS_CLIENT_CA alone does not enable TLS)"
        )
    return ServerTls(
        cert=_read(settings.tls_cert, "AIF_TLS_CERT"),
        key=_read(settings.tls_key, "AIF_TLS_KEY"),
        client_ca=_read(settings.tls_client_ca, "AIF_TLS_CLIENT_CA") if settings.tls_client_ca else None,
    )


def client_tls(settings: ClientSettings) -> ClientTls | None:
    """TLS of the service's calls to the others, from ``client_tls_*`` (None: plaintext).

    The client certificate is ``client_tls_cert``/``client_tls_key``, else the service's
    own server pair (``tls_cert``/``tls_key``); with neither, the calls are TLS without a
    client certificate, which a server that requires mutual TLS refuses.
    """
    extra = settings.client_tls_cert or settings.client_tls_key or settings.client_tls_server_name
    if not settings.client_tls_ca:
        if extra:
            raise ConfigError(
                "AIF_CLIENT_TLS_CA must be set for the other AIF_CLIENT_TLS_* settings to apply"
            )
        return None
    if bool(settings.client_tls_cert) != bool(settings.client_tls_key):
        raise ConfigError("AIF_CLIENT_TLS_CERT and AIF_CLIENT_TLS_KEY must be set together")
    if settings.client_tls_cert:
        cert, key = (
            (settings.client_tls_cert, "AIF_CLIENT_TLS_CERT"),
            (settings.client_tls_key, "AIF_CLIENT_TLS_KEY"),
        )
    else:
        cert, key = (settings.tls_cert, "AIF_TLS_CERT"), (settings.tls_key, "AIF_TLS_KEY")
    return ClientTls(
        ca=_read(settings.client_tls_ca, "AIF_CLIENT_TLS_CA"),
        cert=_read(*cert) if cert[0] else None,
        key=_read(*key) if key[0] else None,
        server_name=settings.client_tls_server_name,
    )


def env_client_tls(environ: Mapping[str, str] | None = None) -> ClientTls | None:
    """A command-line caller's TLS (``aif`` commands, the loop driver, probes) from
    ``AIF_CLIENT_TLS_CA``/``_CERT``/``_KEY``/``_SERVER_NAME``, as a service reads its own;
    unset: plaintext."""
    env = os.environ if environ is None else environ
    ca, cert, key = (env.get(f"AIF_CLIENT_TLS_{k}", "") for k in ("CA", "CERT", "KEY"))
    if not ca:
        return None
    if bool(cert) != bool(key):
        raise ConfigError("AIF_CLIENT_TLS_CERT and AIF_CLIENT_TLS_KEY must be set together")
    return ClientTls(
        ca=_read(ca, "AIF_CLIENT_TLS_CA"),
        cert=_read(cert, "AIF_CLIENT_TLS_CERT") if cert else None,
        key=_read(key, "AIF_CLIENT_TLS_KEY") if key else None,
        server_name=env.get("AIF_CLIENT_TLS_SERVER_NAME", ""),
    )


@dataclass(frozen=True)
class DevPki:
    """A development CA in ``directory`` and a certificate per service (or caller) signed by
    it: what a stack with mutual TLS gives each process (its own pair and the CA, never the
    CA's key)."""

    directory: Path

    def ensure(self) -> DevPki:
        create_ca(self.directory)
        return self

    @property
    def ca(self) -> Path:
        return self.directory / CA_CERT

    def pair(self, name: str) -> CertFiles:
        """``name``'s certificate and key, issued on first use."""
        files = CertFiles(self.directory / f"{name}.pem", self.directory / f"{name}.key")
        if not (files.cert.exists() and files.key.exists()):
            files = issue_cert(self.directory, name)
        return files

    def env(self, name: str) -> dict[str, str]:
        """Service ``name``'s settings for mutual TLS on its port and on its calls to the
        others (``AIF_CLIENT_TLS_CA`` unscoped: a service that calls no one has no such
        setting and ignores it; each caller presents its own pair)."""
        files = self.pair(name)
        prefix = f"AIF_{name.upper()}_"
        return {
            prefix + "TLS_CERT": str(files.cert),
            prefix + "TLS_KEY": str(files.key),
            prefix + "TLS_CLIENT_CA": str(self.ca),
            "AIF_CLIENT_TLS_CA": str(self.ca),
        }

    def client(self, name: str) -> ClientTls:
        """A caller's mutual TLS (an operator, a test, the loop driver)."""
        files = self.pair(name)
        return ClientTls.from_files(self.ca, files.cert, files.key)
