"""Gateway wiring pieces that need no infrastructure: served use cases, the registry
directory (against a stub RegistryService over real gRPC), OIP token checks."""

from __future__ import annotations

from collections.abc import Mapping

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from aifactory.registry.v1 import registry_service_pb2 as reg_pb
from aifactory.registry.v1 import registry_service_pb2_grpc as reg_grpc
from libs.auth import TableAuthorizer
from libs.errors import AifError, ConfigError, Unauthenticated
from libs.rpc.auth import Principal
from libs.settings import load_settings
from libs.usecase import load_default
from libs.usecase.catalogue import Catalogue
from services.gateway.app import served_usecases
from services.gateway.auth import OipAuth
from services.gateway.directory import AliasState, RegistryDirectory
from services.gateway.settings import GatewaySettings


def test_settings_and_served_use_cases(caplog: pytest.LogCaptureFixture) -> None:
    catalogue = Catalogue(load_default())
    settings = load_settings(
        GatewaySettings, {"AIF_GATEWAY_USE_CASES": "loan_approval", "AIF_GATEWAY_OIP_PORT": "-1"}
    )
    assert list(served_usecases(settings, catalogue)) == ["loan_approval"] and settings.oip_address is None
    assert load_settings(GatewaySettings, {}).oip_address == "127.0.0.1:50066"
    assert load_settings(GatewaySettings, {"AIF_GATEWAY_GRPC_PORT": "51056"}).oip_address == "127.0.0.1:51066"
    assert load_settings(GatewaySettings, {"AIF_GATEWAY_GRPC_PORT": "0"}).oip_address == "127.0.0.1:0"
    assert set(served_usecases(load_settings(GatewaySettings, {}), catalogue)) >= {
        "loan_approval",
        "image_segments",
    }
    # A use case named but not (yet) in the catalogue is served once applied: a warning, not a stop.
    assert served_usecases(load_settings(GatewaySettings, {"AIF_GATEWAY_USE_CASES": "nope"}), catalogue) == {}
    assert "nope, not in the catalogue (yet)" in caplog.text
    with pytest.raises(ConfigError):
        load_settings(GatewaySettings, {"AIF_GATEWAY_COALESCE_INFLIGHTS": "2"})


class StubRegistry(reg_grpc.RegistryServiceServicer):
    async def GetAlias(self, request: reg_pb.GetAliasRequest, context) -> reg_pb.GetAliasResponse:  # type: ignore[no-untyped-def]
        if request.alias != "champion" or request.model_name != request.use_case:
            await context.abort(grpc.StatusCode.NOT_FOUND, "not set")
        return reg_pb.GetAliasResponse(
            alias=reg_pb.ModelAlias(
                use_case=request.use_case,
                model_name=request.model_name,
                alias="champion",
                version=5,
                updated_at=Timestamp(seconds=100, nanos=5000),
            )
        )


async def test_registry_directory_reads_champion_and_skips_unset_aliases() -> None:
    server = grpc.aio.server()
    reg_grpc.add_RegistryServiceServicer_to_server(StubRegistry(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            states = await RegistryDirectory(channel).aliases(["loan_approval"])
    finally:
        await server.stop(0)
    assert states == [AliasState("loan_approval", "champion", 5, 100_000_005)]


class Tokens:
    def __init__(self) -> None:
        self.verified = 0

    def authenticate(self, method: str, metadata: Mapping[str, str]) -> Principal:
        self.verified += 1
        if metadata.get("authorization") == "Bearer app":
            return Principal("app-1", scopes={"loan_approval": frozenset({"app"})})
        if metadata.get("authorization") == "Bearer eng":
            return Principal("eng", scopes={"*": frozenset({"ml-engineer"})})
        raise Unauthenticated("bad token")


def test_oip_auth_checks_the_use_case_and_remembers_tokens() -> None:
    tokens = Tokens()
    auth = OipAuth(tokens, TableAuthorizer())
    app = (("authorization", "Bearer app"),)
    assert auth.check("ModelInfer", app, "loan_approval").subject == "app-1"
    auth.check("ModelInfer", app, "loan_approval")
    assert tokens.verified == 1  # cached
    with pytest.raises(AifError) as err:
        auth.check("ModelInfer", app, "image_segments")
    assert err.value.code is grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(AifError) as err:
        auth.check("ModelInfer", (("authorization", "Bearer eng"),), "loan_approval")
    assert err.value.code is grpc.StatusCode.PERMISSION_DENIED  # engineers do not request predictions
    with pytest.raises(AifError) as err:
        auth.check("ModelInfer", (("authorization", "Bearer nope"),), "loan_approval")
    assert err.value.code is grpc.StatusCode.UNAUTHENTICATED and "credentials" in err.value.message
    with pytest.raises(AifError):
        auth.check("ModelInfer", (), "loan_approval")


class _NoModels:
    served: dict[str, object] = {}


class _Context:
    def __init__(self, metadata: tuple[tuple[str, str], ...]) -> None:
        self._metadata = metadata

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self._metadata


async def test_oip_checks_credentials_before_saying_whether_a_model_exists() -> None:
    from tritonclient.grpc import service_pb2

    from services.gateway.servicer import OipServicer

    oip = OipServicer(None, _NoModels(), triton=None, auth=OipAuth(Tokens(), TableAuthorizer()))  # type: ignore[arg-type]
    request = service_pb2.ModelInferRequest(model_name="secret_model").SerializeToString()
    with pytest.raises(AifError) as err:
        await oip._infer(request, _Context(()))  # type: ignore[arg-type]
    assert err.value.code is grpc.StatusCode.UNAUTHENTICATED  # not NOT_FOUND: no probing of names
    with pytest.raises(AifError) as err:
        await oip._infer(request, _Context((("authorization", "Bearer app"),)))  # type: ignore[arg-type]
    assert err.value.code is grpc.StatusCode.NOT_FOUND
    with pytest.raises(AifError) as err:
        oip._known("secret_model", _Context(()))  # type: ignore[arg-type]
    assert err.value.code is grpc.StatusCode.UNAUTHENTICATED
