"""``aif token``: development credentials from a local key.

    aif token keygen                       Ed25519 key pair into build/auth/ (private key 0600)
    aif token issue --sub alice --role loan_approval:approver --role '*:auditor' --ttl 1h
    aif token revoke <token-or-jti>        refused from the next call on, by every service
    aif token revoke --subject svc-trainer every token of that subject issued until now
    aif token rotate                       new signing key; the JWKS keeps the old one
    aif token retire <kid>                 drop a rotated-out key (once its tokens expired)
    aif token certs                        dev CA + a certificate per service (mutual TLS)
    aif token service [NAME...] [--uid N] [--refresh]
                                           each service's own folder: build/auth/services/<name>/

The folder is ``AIF_AUTH_DIR`` (default ``build/auth``): it holds the signing (private)
key and stays with whoever issues tokens. A service host is given only its own folder
from ``aif token service`` (public keys ``jwks.json``, revocation list and, for a service
that calls others, its ``token``: subject and role ``svc-<name>``, one hour by default,
minted again before it expires by ``--refresh``; the service re-reads the file):
docker-compose.yml mounts those files, the Helm chart takes them as values
(deploy/helm/aifactory/README.md).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from pathlib import Path

import jwt

from aif.stack import CALLERS, SERVICE_ROLES
from aif.stack import SERVICES as STACK_SERVICES
from libs.auth.dev import SERVICE_TOKEN_TTL_S, DevAuth, auth_dir_from_env
from libs.auth.jwks import JWKS_FILE
from libs.auth.permissions import Role
from libs.auth.tls import create_ca, issue_cert
from libs.auth.tokens import DEFAULT_MAX_TOKEN_TTL_S, REVOKED_FILE, generate_keypair, parse_grants
from libs.errors import AifError
from libs.settings import DEFAULT_AUDIENCE, DEFAULT_ISSUER

SERVICES = tuple(STACK_SERVICES)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_ttl(text: str) -> int:
    """``90``, ``90s``, ``30m``, ``1h``, ``7d`` → seconds."""
    match = re.fullmatch(r"(\d+)([smhd]?)", text.strip())
    if not match or int(match.group(1)) <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration like 90s, 30m, 1h, 7d")
    return int(match.group(1)) * _UNITS[match.group(2) or "s"]


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("token", help="development tokens, revocation and mTLS certificates")
    parser.add_argument(
        "--dir", type=Path, default=None, help="key folder (default: $AIF_AUTH_DIR or build/auth)"
    )
    cmds = parser.add_subparsers(dest="token_command", required=True)
    keygen = cmds.add_parser("keygen", help="create the Ed25519 signing key pair")
    keygen.add_argument("--force", action="store_true", help="replace an existing key pair")
    issue = cmds.add_parser("issue", help="print a signed token")
    issue.add_argument("--sub", required=True, help="subject (who the token is for)")
    issue.add_argument(
        "--role",
        action="append",
        required=True,
        metavar="USE_CASE:ROLE",
        help=f"repeatable; '*' for every use case; roles: {', '.join(r.value for r in Role)}",
    )
    issue.add_argument("--ttl", type=parse_ttl, default=3600, help="lifetime, e.g. 30m, 1h (default 1h)")
    issue.add_argument("--issuer", default=DEFAULT_ISSUER)
    issue.add_argument("--audience", default=DEFAULT_AUDIENCE)
    revoke = cmds.add_parser("revoke", help="add a token (or its jti) to the revocation list")
    revoke.add_argument("token", nargs="?", help="the token, or its jti")
    revoke.add_argument(
        "--subject", help="revoke every token of this subject issued until now (e.g. svc-trainer)"
    )
    cmds.add_parser("rotate", help="new signing key; the JWKS keeps the old public key")
    retire = cmds.add_parser("retire", help="drop a rotated-out key from the JWKS")
    retire.add_argument(
        "kid", help="the key's id (aif token rotate prints them; one beginning with '-' goes after --)"
    )
    service = cmds.add_parser(
        "service", help="mint each service's own credentials folder (public key, revocation list, token)"
    )
    service.add_argument("names", nargs="*", help=f"services (default: all of {', '.join(SERVICES)})")
    service.add_argument(
        "--ttl",
        type=parse_ttl,
        default=SERVICE_TOKEN_TTL_S,
        help="token lifetime (default 1h: mint again before)",
    )
    service.add_argument(
        "--refresh",
        action="store_true",
        help="keep running and mint the tokens again at a third of their lifetime",
    )
    service.add_argument(
        "--uid",
        type=int,
        default=None,
        help="owner of each folder and token (docker-compose.yml's containers run as 10001)",
    )
    certs = cmds.add_parser("certs", help="dev CA and one certificate per service for mutual TLS")
    certs.add_argument("names", nargs="*", help=f"certificate names (default: {', '.join(SERVICES)}, client)")


def run(args: argparse.Namespace) -> int:
    directory: Path = (args.dir or auth_dir_from_env()).resolve()
    try:
        return _COMMANDS[args.token_command](args, directory)
    except AifError as exc:
        print(f"aif token: {exc.message}", file=sys.stderr)
        return 2


def _keygen(args: argparse.Namespace, directory: Path) -> int:
    private, public = generate_keypair(directory, overwrite=args.force)
    if args.force:
        (directory / JWKS_FILE).unlink(missing_ok=True)  # published anew with the new key only
    DevAuth(directory).ensure()  # the JWKS, the revocation list and the privacy salt
    print(f"private key {private} (0600)\npublic key  {public}")
    return 0


def _issue(args: argparse.Namespace, directory: Path) -> int:
    auth = DevAuth(directory, issuer=args.issuer, audience=args.audience)
    if args.ttl > DEFAULT_MAX_TOKEN_TTL_S:
        print(
            f"aif token: warning: services refuse tokens living over {DEFAULT_MAX_TOKEN_TTL_S}s "
            "unless AIF_AUTH_MAX_TOKEN_TTL_S allows it",
            file=sys.stderr,
        )
    print(auth.issue(args.sub, parse_grants(args.role), ttl_seconds=args.ttl))
    return 0


def _revoke(args: argparse.Namespace, directory: Path) -> int:
    if (args.token is None) == (args.subject is None):
        print("aif token: revoke a token (or jti), or --subject, one of them", file=sys.stderr)
        return 2
    if args.subject is not None:
        try:
            DevAuth(directory).revocations.revoke_subject(args.subject, time.time())
        except ValueError as exc:
            print(f"aif token: {exc}", file=sys.stderr)
            return 2
        print(f"revoked every token of {args.subject} issued until now")
        return 0
    jti = args.token
    if jti.count(".") == 2:
        # Revoking needs only the id; a forged token's id is harmless on the list.
        try:
            jti = jwt.decode(jti, options={"verify_signature": False}).get("jti", "")
        except jwt.InvalidTokenError:
            print("aif token: not a token", file=sys.stderr)
            return 2
        if not isinstance(jti, str) or not jti:
            print("aif token: the token has no jti", file=sys.stderr)
            return 2
    added = DevAuth(directory).revocations.revoke(jti)
    print(f"{'revoked' if added else 'already revoked'}: {jti}")
    return 0


def _rotate(args: argparse.Namespace, directory: Path) -> int:
    auth = DevAuth(directory)
    kid = auth.rotate()
    print(f"signing key {kid}\npublished keys (newest first): {' '.join(auth.published_kids())}")
    return 0


def _retire(args: argparse.Namespace, directory: Path) -> int:
    auth = DevAuth(directory)
    auth.retire(args.kid)
    print(f"retired {args.kid}; published keys: {' '.join(auth.published_kids())}")
    return 0


def _service(args: argparse.Namespace, directory: Path) -> int:
    unknown = sorted(set(args.names) - set(SERVICES))
    if unknown:
        print(f"aif token: unknown service(s) {', '.join(unknown)}", file=sys.stderr)
        return 2
    auth = DevAuth(directory)
    while True:
        for name in args.names or SERVICES:
            roles = SERVICE_ROLES[name] if name in CALLERS else None
            folder = auth.mint_service(name, roles, ttl_seconds=args.ttl)
            if args.uid is not None:
                # Bind-mounted files keep their host owner: the container's user must own the
                # token (0600) and the folder (0700) to read them.
                for path in (folder, *(p for p in folder.iterdir() if p.name != REVOKED_FILE)):
                    os.chown(path, args.uid, -1)
            print(f"{name:<12} {folder}{'  (token)' if roles else ''}", flush=True)
        if not args.refresh:
            return 0
        # Services re-read a rewritten token file: re-minting at a third of the lifetime
        # keeps a running compose stack authenticated (stop with Ctrl-C).
        time.sleep(max(1, args.ttl // 3))


def _certs(args: argparse.Namespace, directory: Path) -> int:
    ca = create_ca(directory)
    print(f"CA           {ca.cert}")
    for name in args.names or [*SERVICES, "client"]:
        files = issue_cert(directory, name, ca=ca)
        print(f"{name:<12} {files.cert}  {files.key} (0600)")
    return 0


_COMMANDS = {
    "keygen": _keygen,
    "issue": _issue,
    "revoke": _revoke,
    "rotate": _rotate,
    "retire": _retire,
    "service": _service,
    "certs": _certs,
}
