"""The gateway over HTTP/JSON: the Open Inference Protocol's REST binding and the business API.

A third transport over the same parts as the gRPC servers (:mod:`services.gateway.servicer`),
as KServe's REST endpoints sit beside its gRPC ones over one data plane:

- KServe v2 REST (``/v2/...``): each call is turned into the OIP message the gRPC
  server takes and handed to the same :class:`~services.gateway.servicer.OipServicer`
  method (the same routing, checks, tokens (:mod:`services.gateway.auth`) and errors);
  tensors travel as JSON lists, non-finite outputs as ``null``.
- the business API (``/v1/...``): JSON ⇄ the ``aifactory.gateway.v1`` messages, then the
  same :class:`~services.gateway.servicer.GatewayServicer` method, after the checks the
  shared gRPC interceptor makes (the same authenticator and permission table, under the
  gRPC method's name). Feature and outcome values are plain JSON scalars.

Credentials (``Authorization: Bearer <token>``) are checked before the body is read.
Every error is ``{"error": {"code", "message", "field"}}`` with the gRPC code's name and
the HTTP status of Google's gRPC↔HTTP mapping. ``/openapi.json`` describes it all
(:mod:`services.gateway.openapi`); bodies are converted by :mod:`services.gateway.restjson`.
The server is uvicorn on the gRPC servers' event loop.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
import socket
import ssl
import sys
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

import grpc
import uvicorn
from opentelemetry import propagate
from opentelemetry.trace import SpanKind, Tracer
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from tritonclient.grpc import service_pb2

from libs.errors import (
    AifError,
    ConfigError,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    StatusError,
    Unauthenticated,
)
from libs.rpc.auth import Authenticator, Authorizer, Principal, ServerSecurity, current_principal
from libs.rpc.interceptor import PERMISSION_DENIED_MESSAGE, UNAUTHENTICATED_MESSAGE
from libs.rpc.server import MAX_MESSAGE_BYTES
from libs.telemetry import Telemetry
from services.gateway.auth import OipAuth
from services.gateway.openapi import document
from services.gateway.restjson import (
    batch_request,
    feedback_request,
    infer_request,
    infer_response_json,
    predict_request,
    prediction_json,
    tensor_meta,
)
from services.gateway.servicer import GatewayServicer, OipServicer
from services.gateway.settings import GatewaySettings

log = logging.getLogger(__name__)

_GW = "/aifactory.gateway.v1.GatewayService/"
# gRPC status → HTTP status (Google's mapping, as grpc-gateway uses).
HTTP_STATUS: Mapping[grpc.StatusCode, int] = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}
_HTTP_CODE = {404: "NOT_FOUND", 405: "UNIMPLEMENTED", 413: "RESOURCE_EXHAUSTED"}
MAX_DETAILS = 1024
_VERSION = re.compile(r"[0-9]{1,18}")  # ASCII digits: str.isdigit() also takes "²"


def error_body(code: grpc.StatusCode | str, message: str, field: str | None = None) -> dict[str, Any]:
    name = code if isinstance(code, str) else code.name
    if len(message) > MAX_DETAILS:  # messages may quote the input: bounded, as on gRPC
        message = message[: MAX_DETAILS - 3] + "..."
    return {"error": {"code": name, "message": message, "field": field}}


def error_response(exc: AifError) -> JSONResponse:
    if isinstance(exc, Unauthenticated) or exc.code == grpc.StatusCode.UNAUTHENTICATED:
        # The caller learns no more than on gRPC; the reason stays in the log.
        return JSONResponse(
            error_body(grpc.StatusCode.UNAUTHENTICATED, UNAUTHENTICATED_MESSAGE),
            401,
            headers={"WWW-Authenticate": "Bearer"},
        )
    if isinstance(exc, PermissionDenied) or exc.code == grpc.StatusCode.PERMISSION_DENIED:
        return JSONResponse(error_body(grpc.StatusCode.PERMISSION_DENIED, PERMISSION_DENIED_MESSAGE), 403)
    field = exc.field if isinstance(exc, InvalidArgument) else None
    status = 413 if isinstance(exc, _TooLarge) else HTTP_STATUS.get(exc.code, 500)
    return JSONResponse(error_body(exc.code, exc.message, field), status)


def _json(data: Any, status: int = 200) -> Response:
    # allow_nan=False: NaN is no JSON; the converters below never leave one.
    return Response(
        json.dumps(data, ensure_ascii=False, allow_nan=False, separators=(",", ":")),
        status,
        media_type="application/json",
    )


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


async def read_json(request: Request) -> Any:
    """The body as JSON; at most the gRPC servers' message size."""
    declared = request.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and int(declared) > MAX_MESSAGE_BYTES:
        raise _TooLarge()
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_MESSAGE_BYTES:
            raise _TooLarge()
        chunks.append(chunk)
    try:
        return json.loads(b"".join(chunks), parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:
        raise InvalidArgument("body", f"not JSON ({type(exc).__name__})") from None


class _TooLarge(AifError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED

    def __init__(self) -> None:
        super().__init__(f"request body over {MAX_MESSAGE_BYTES} bytes")


class _Context:
    """What :class:`OipServicer` reads of a gRPC call's context, for a REST call."""

    def __init__(self, request: Request) -> None:
        headers = request.headers
        self._metadata = tuple(
            (key, headers[key]) for key in ("authorization", "traceparent") if key in headers
        )

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self._metadata

    async def abort(self, code: grpc.StatusCode, details: str) -> None:
        # The servicer aborts while handling a typed error: that error goes on as it is (an
        # InvalidArgument keeps its field for the JSON answer).
        handled = sys.exc_info()[1]
        if isinstance(handled, AifError) and handled.code == code:
            raise handled
        raise StatusError(code, details)


# -- the application -------------------------------------------------------------------

Handler = Callable[[Request], Awaitable[Response]]


class HttpGateway:
    """The Starlette application over the gateway's two servicers."""

    def __init__(
        self,
        business: GatewayServicer,
        oip: OipServicer,
        *,
        authenticator: Authenticator,
        authorizer: Authorizer | None,
        oip_auth: OipAuth | None,
        tracer: Tracer | None = None,
    ) -> None:
        self._business = business
        self._oip = oip
        self._authn = authenticator
        self._authz = authorizer
        self._oip_auth = oip_auth
        self._tracer = tracer
        self._openapi = json.dumps(document()).encode()
        v2 = "/v2/models/{name}"
        routes = [
            Route("/openapi.json", self._wrap(self.openapi), methods=["GET"]),
            Route("/v2/health/live", self._wrap(self.live), methods=["GET"]),
            Route("/v2/health/ready", self._wrap(self.ready), methods=["GET"]),
            Route("/v2", self._wrap(self.server_metadata), methods=["GET"]),
            Route(v2, self._wrap(self.model_metadata), methods=["GET"]),
            Route(v2 + "/versions/{version}", self._wrap(self.model_metadata), methods=["GET"]),
            Route(v2 + "/ready", self._wrap(self.model_ready), methods=["GET"]),
            Route(v2 + "/versions/{version}/ready", self._wrap(self.model_ready), methods=["GET"]),
            Route(v2 + "/infer", self._wrap(self.infer), methods=["POST"]),
            Route(v2 + "/versions/{version}/infer", self._wrap(self.infer), methods=["POST"]),
            Route("/v1/predict", self._wrap(self.predict), methods=["POST"]),
            Route("/v1/predict-batch", self._wrap(self.predict_batch), methods=["POST"]),
            Route("/v1/feedback", self._wrap(self.feedback), methods=["POST"]),
        ]
        self.app = Starlette(routes=routes, exception_handlers={HTTPException: self._http_error})

    @staticmethod
    async def _http_error(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        code = _HTTP_CODE.get(status, "INVALID_ARGUMENT" if status < 500 else "INTERNAL")
        message = "no such path" if status == 404 else str(getattr(exc, "detail", "")) or code
        return JSONResponse(error_body(code, message), status)

    def _wrap(self, handler: Handler) -> Handler:
        async def endpoint(request: Request) -> Response:
            span: AbstractContextManager[Any] = nullcontext()
            if self._tracer is not None:
                span = self._tracer.start_as_current_span(
                    f"HTTP {handler.__name__}",
                    context=propagate.extract(dict(request.headers)),
                    kind=SpanKind.SERVER,
                    attributes={"http.request.method": request.method, "url.path": request.url.path},
                )
            with span:
                try:
                    return await handler(request)
                except AifError as exc:
                    return error_response(exc)
                except grpc.aio.AioRpcError as exc:  # a dependency's own status, passed on
                    return error_response(StatusError(exc.code(), exc.details() or exc.code().name))
                except Exception:  # noqa: BLE001 - details stay in the log, as on gRPC
                    log.exception("%s %s failed", request.method, request.url.path)
                    return JSONResponse(error_body(grpc.StatusCode.INTERNAL, "internal error"), 500)

        return endpoint

    # -- open endpoints -----------------------------------------------------------------

    async def openapi(self, request: Request) -> Response:
        return Response(self._openapi, media_type="application/json")

    async def live(self, request: Request) -> Response:
        return _json({"live": True})

    async def ready(self, request: Request) -> Response:
        reply = await self._oip.server_ready(service_pb2.ServerReadyRequest(), _Context(request))
        # The protocol's health answer is the status: 200 true, 4xx false.
        return _json({"ready": reply.ready}, 200 if reply.ready else 400)

    async def server_metadata(self, request: Request) -> Response:
        reply = await self._oip.server_metadata(service_pb2.ServerMetadataRequest(), _Context(request))
        return _json({"name": reply.name, "version": reply.version, "extensions": list(reply.extensions)})

    # -- the Open Inference Protocol ----------------------------------------------------

    @staticmethod
    def _path(request: Request) -> tuple[str, str]:
        version = request.path_params.get("version", "")
        if version and not _VERSION.fullmatch(version):
            raise NotFound(f"model {request.path_params['name']!r} version {version[:32]!r} is not served")
        return request.path_params["name"], version

    async def model_metadata(self, request: Request) -> Response:
        name, version = self._path(request)
        raw = await self._oip.model_metadata(
            service_pb2.ModelMetadataRequest(name=name, version=version), _Context(request)
        )
        meta = service_pb2.ModelMetadataResponse.FromString(raw)
        return _json(
            {
                "name": name,
                "versions": list(meta.versions),
                "platform": meta.platform,
                "inputs": [tensor_meta(t) for t in meta.inputs],
                "outputs": [tensor_meta(t) for t in meta.outputs],
            }
        )

    async def model_ready(self, request: Request) -> Response:
        name, version = self._path(request)
        reply = await self._oip.model_ready(
            service_pb2.ModelReadyRequest(name=name, version=version), _Context(request)
        )
        return _json({"name": name, "ready": reply.ready}, 200 if reply.ready else 400)

    async def infer(self, request: Request) -> Response:
        name, version = self._path(request)
        context = _Context(request)
        if self._oip_auth is not None:  # credentials before the body is read
            self._oip_auth.authenticate("ModelInfer", context.invocation_metadata())
        payload = infer_request(name, version, await read_json(request))
        reply = await self._oip.model_infer(payload, context)  # type: ignore[arg-type]
        return _json(infer_response_json(reply))

    # -- the business API ---------------------------------------------------------------

    def _principal(self, request: Request, method: str) -> Principal:
        """The caller, from the bearer token, as the shared interceptor finds it."""
        header = request.headers.get("authorization")
        try:
            return self._authn.authenticate(method, {"authorization": header} if header else {})
        except AifError:
            raise
        except Exception:  # noqa: BLE001 - a broken authenticator must refuse, not crash
            log.exception("authenticator failed on %s", method)
            raise Unauthenticated("authenticator error", reason="authenticator_error") from None

    async def _call(
        self, request: Request, rpc: str, parse: Callable[[Any], Any], call: Callable[..., Any]
    ) -> Any:
        method = _GW + rpc
        principal = self._principal(request, method)
        message = parse(await read_json(request))
        if self._authz is not None:
            self._authz.authorize(principal, method, message)
        token = current_principal.set(principal)
        try:
            reply = await call(message, None)
            if self._authz is not None:
                self._authz.settle(principal, method)
        finally:
            current_principal.reset(token)
        return reply

    async def predict(self, request: Request) -> Response:
        reply = await self._call(request, "Predict", predict_request, self._business.Predict)
        return _json({"prediction": prediction_json(reply.prediction)})

    async def predict_batch(self, request: Request) -> Response:
        reply = await self._call(request, "PredictBatch", batch_request, self._business.PredictBatch)
        return _json({"predictions": [prediction_json(p) for p in reply.predictions]})

    async def feedback(self, request: Request) -> Response:
        reply = await self._call(request, "RecordFeedback", feedback_request, self._business.RecordFeedback)
        return _json({"feedback_id": reply.feedback_id})


# -- the server ------------------------------------------------------------------------


def _bind(address: str) -> socket.socket:
    host, _, port = address.rpartition(":")
    host = host.strip("[]")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, int(port)))
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


class _Uvicorn(uvicorn.Server):
    """uvicorn without signal handlers of its own: the service's runner owns SIGTERM and
    stops this server among its closers."""

    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class HttpServer:
    """uvicorn serving ``app`` on this event loop, beside the gRPC servers."""

    def __init__(
        self,
        app: Any,
        address: str,
        *,
        tls: tuple[str, str, str] | None = None,
        drain_seconds: float = 5.0,
    ) -> None:
        kwargs: dict[str, Any] = {}
        if tls is not None:
            cert, key, client_ca = tls
            kwargs.update(ssl_certfile=cert, ssl_keyfile=key)
            if client_ca:
                kwargs.update(ssl_ca_certs=client_ca, ssl_cert_reqs=ssl.CERT_REQUIRED)
        config = uvicorn.Config(
            app,
            lifespan="off",
            log_config=None,
            access_log=False,
            server_header=False,
            timeout_graceful_shutdown=max(math.ceil(drain_seconds), 1),
            **kwargs,
        )
        self._server = _Uvicorn(config)
        self._address = address
        self._task: asyncio.Task[None] | None = None
        self.port = 0

    async def start(self) -> int:
        sock = _bind(self._address)
        self.port = sock.getsockname()[1]
        self._task = asyncio.get_running_loop().create_task(self._server.serve(sockets=[sock]))
        while not self._server.started:
            if self._task.done():
                sock.close()
                await self._task  # its error
                raise ConfigError(f"HTTP server on {self._address} did not start")
            await asyncio.sleep(0.005)
        return self.port

    async def stop(self) -> None:
        if self._task is None:
            return
        self._server.should_exit = True
        await self._task


async def start_http(
    settings: GatewaySettings,
    security: ServerSecurity,
    telemetry: Telemetry,
    business: GatewayServicer,
    oip: OipServicer,
) -> HttpServer | None:
    """The HTTP/JSON server on ``settings.http_address``, started (None when it is off).
    TLS and client certificates as on the gRPC ports."""
    address = settings.http_address
    if address is None:
        return None
    oip_auth = None if settings.auth_mode == "off" else OipAuth(security.authenticator, security.authorizer)
    app = HttpGateway(
        business,
        oip,
        authenticator=security.authenticator,
        authorizer=security.authorizer,
        oip_auth=oip_auth,
        tracer=telemetry.tracer,
    )
    tls = (settings.tls_cert, settings.tls_key, settings.tls_client_ca) if security.tls is not None else None
    server = HttpServer(app.app, address, tls=tls, drain_seconds=settings.drain_seconds)
    try:
        await server.start()
    except OSError as exc:
        raise ConfigError(
            f"cannot listen on {address} (AIF_GATEWAY_HTTP_PORT): {exc.strerror or exc}"
        ) from None
    log.info("HTTP/JSON (KServe v2 REST, business API) on port %d", server.port)
    return server
