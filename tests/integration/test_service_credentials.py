"""A service host holds only its own credentials: started with nothing but a copy of its
own folder (public key, revocation list, its token file), with the issuer's folder and
its private key gone, each service starts, and a caller's token file gets its calls to
the others accepted. (tests/e2e/test_loop.py runs the whole loop on such folders.)"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from aif.stack import CALLERS, Stack
from aifactory.featurestore.v1 import featurestore_service_pb2 as fs
from aifactory.featurestore.v1 import featurestore_service_pb2_grpc as fs_grpc
from aifactory.registry.v1 import registry_service_pb2 as reg
from aifactory.registry.v1 import registry_service_pb2_grpc as reg_grpc
from libs.auth import DevAuth
from libs.auth.dev import TOKEN_FILE
from libs.auth.jwks import JWKS_FILE
from libs.auth.tokens import PUBLIC_KEY_FILE, REVOKED_FILE
from libs.rpc import insecure_channel
from libs.settings import load_settings
from services.gateway.settings import GatewaySettings

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

# Ports above the ephemeral range, apart from every other stack's: see aif.stack.Stack.
PORT_OFFSET = 12800
NAMES = ("featurestore", "registry", "gateway")


class _HostStack(Stack):
    """A stack whose services get the environment given here, not one minted at start."""

    prepared: dict[str, dict[str, str]]

    def environment(self, name: str) -> dict[str, str]:
        return self.prepared[name]


@pytest.fixture(scope="module")
def hosts(kafka, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[_HostStack, dict[str, Path]]]:  # type: ignore[no-untyped-def]
    issuer = DevAuth(tmp_path_factory.mktemp("issuer"))
    minting = Stack(
        tmp_path_factory.mktemp("logs"),
        port_offset=PORT_OFFSET,
        data_root=tmp_path_factory.mktemp("state"),
        # The feature store serves reads only: no stream processor to wait for.
        env={"AIF_KAFKA_BOOTSTRAP": kafka.bootstrap_servers, "AIF_FEATURESTORE_STREAM_ENABLED": "false"},
        auth=issuer,
    )
    # Each "host" gets a copy of its service's folder, nothing else.
    prepared: dict[str, dict[str, str]] = {}
    folders: dict[str, Path] = {}
    for name in NAMES:
        env = minting.environment(name)
        folder = tmp_path_factory.mktemp(f"host-{name}") / "secrets"
        shutil.copytree(minting.auth.service_dir(name), folder)
        env = {
            key: value.replace(str(minting.auth.service_dir(name)), str(folder)) for key, value in env.items()
        }
        prepared[name], folders[name] = env, folder
    shutil.rmtree(issuer.directory)  # no private key anywhere from here on
    stack = _HostStack(minting.log_dir, port_offset=PORT_OFFSET, auth=issuer, data_root=minting.data_root)
    stack.prepared = prepared
    stack.start(NAMES, timeout=120)
    yield stack, folders
    stack.stop()


def test_each_service_is_given_only_its_own_folder(hosts: tuple[_HostStack, dict[str, Path]]) -> None:
    stack, folders = hosts
    for name in NAMES:
        env = stack.prepared[name]
        assert env["AIF_AUTH_DIR"] == str(folders[name])
        expected = {PUBLIC_KEY_FILE, JWKS_FILE, REVOKED_FILE} | ({TOKEN_FILE} if name in CALLERS else set())
        assert {p.name for p in folders[name].iterdir()} == expected, name
        token_var = f"AIF_{name.upper()}_SERVICE_TOKEN_FILE"
        assert (env.get(token_var) == str(folders[name] / TOKEN_FILE)) == (name in CALLERS)
        # No token value and no other credential folder anywhere in its environment.
        assert not any(re.search(r"eyJ[\w-]+\.[\w-]+\.", v) for v in env.values()), name
        assert not any("issuer" in v for v in env.values()), name


async def _code(call: Any, request: Any) -> grpc.StatusCode:
    try:
        await call(request, timeout=10)
    except grpc.aio.AioRpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


async def test_a_caller_reaches_others_with_its_token_file(hosts: tuple[_HostStack, dict[str, Path]]) -> None:
    """The gateway's client channels as its build makes them (``settings.bearer_token()``, from
    the token file in its own folder) against the registry and the feature store, each
    verifying with nothing but its own folder: accepted (the answer is the service's, not
    an authentication refusal); without the token, refused."""
    stack, _ = hosts
    settings = load_settings(GatewaySettings, stack.prepared["gateway"])
    token = settings.bearer_token()
    assert callable(token), "the gateway reads its token from its file"
    alias = reg.GetAliasRequest(use_case="loan_approval", model_name="loan_approval", alias="champion")
    features = fs.GetOnlineFeaturesRequest(use_case="loan_approval", entity_ids=["x"])
    refused = {grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED}
    for bearer, accepted in ((token, True), (None, False)):
        async with insecure_channel(stack.target("registry"), token=bearer) as registry:
            code = await _code(reg_grpc.RegistryServiceStub(registry).GetAlias, alias)
            assert (code not in refused) == accepted, code
        async with insecure_channel(stack.target("featurestore"), token=bearer) as store:
            code = await _code(fs_grpc.FeatureStoreServiceStub(store).GetOnlineFeatures, features)
            assert (code not in refused) == accepted, code
