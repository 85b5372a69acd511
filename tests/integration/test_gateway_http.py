"""The gateway over HTTP/JSON on a real Triton and Kafka: KServe v2 REST, the business API,
the same tokens as on gRPC, and the OpenAPI document fuzzed by schemathesis (no 5xx, every
response as the document says).

Triton is the gateway tests' own (``tests.gateway_support``); features by entity id come
from the stub feature store of ``tests/integration/test_gateway.py`` over real gRPC.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import math
import os
import re
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
import requests
import tritonclient.grpc as grpcclient

from aifactory.featurestore.v1 import featurestore_service_pb2 as fs_pb
from aifactory.featurestore.v1 import featurestore_service_pb2_grpc as fs_grpc
from aifactory.gateway.v1 import events_pb2
from aifactory.gateway.v1 import gateway_service_pb2 as gw_pb
from aifactory.gateway.v1 import gateway_service_pb2_grpc as gw_grpc
from tests.gateway_support import RunningGateway, gateway_settings, shared_triton, start_gateway
from tests.integration.test_gateway import (
    WIDTH,
    StubFeatureStore,
    as_values,
    features,
    read_events,
    row,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def triton():  # type: ignore[no-untyped-def]
    return shared_triton()


class AnyEntityFeatureStore(StubFeatureStore):
    """test_gateway's stub for any entity id (schemathesis sends all kinds): "a<digits>" are
    found, the rest are not (the stub itself would fail on them, and the gateway rightly
    answer that its feature store is unavailable)."""

    async def GetOnlineFeatures(self, request, context):  # type: ignore[no-untyped-def]
        known = [e for e in request.entity_ids if re.fullmatch(r"a[0-9]{1,9}", e)]
        found = await super().GetOnlineFeatures(
            fs_pb.GetOnlineFeaturesRequest(use_case=request.use_case, entity_ids=known), context
        )
        rows = {row.entity_id: row for row in found.rows}
        reply = fs_pb.GetOnlineFeaturesResponse()
        for entity in request.entity_ids:
            if entity in rows:
                reply.rows.add().CopyFrom(rows[entity])
            else:
                reply.rows.add(entity_id=entity)
        return reply


@pytest.fixture
async def feature_store() -> AsyncIterator[tuple[str, StubFeatureStore]]:
    server = grpc.aio.server()
    stub = AnyEntityFeatureStore()
    fs_grpc.add_FeatureStoreServiceServicer_to_server(stub, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield f"127.0.0.1:{port}", stub
    await server.stop(0)


@pytest.fixture
async def topics(new_topic) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {
        "predictions_topic": await new_topic("gwhttp.predictions"),
        "feedback_topic": await new_topic("gwhttp.feedback"),
        "model_promoted_topic": await new_topic("gwhttp.promoted"),
    }


@pytest.fixture
async def gateway(triton, kafka, topics, feature_store) -> AsyncIterator[RunningGateway]:  # type: ignore[no-untyped-def]
    settings = gateway_settings(
        triton.grpc_url,
        kafka.bootstrap_servers,
        static_aliases="loan_approval:champion=1",
        featurestore_target=feature_store[0],
        **topics,
        **control(triton),
    )
    gw = await start_gateway(settings)
    try:
        yield await ready(gw)
    finally:
        await gw.stop()


def control(triton) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """The key of a Triton that restricts model control to the gateway (none: not restricted)."""
    key = getattr(triton, "control_key", "")
    return {"triton_control_key": key} if key else {}


def base(gw: RunningGateway) -> str:
    return f"http://127.0.0.1:{gw.service.http_port}"


async def ready(gw: RunningGateway, timeout_s: float = 120.0) -> RunningGateway:
    """``gw`` once its champion is loaded (a load takes seconds on a busy 2-core machine)."""
    async with asyncio.timeout(timeout_s):
        while (await call("GET", f"{base(gw)}/v2/health/ready")).status_code != 200:
            await asyncio.sleep(0.2)
    return gw


async def call(method: str, url: str, body: Any = None, **kwargs: Any) -> requests.Response:
    """One HTTP request from a thread (requests is blocking; the gateway runs on this loop)."""
    if body is not None:
        kwargs["data"] = body if isinstance(body, bytes | str) else json.dumps(body)
        kwargs.setdefault("headers", {})["content-type"] = "application/json"
    return await asyncio.to_thread(requests.request, method, url, timeout=30, **kwargs)


def v2_input(x: np.ndarray, name: str = "INPUT", datatype: str = "FP32") -> dict[str, Any]:
    return {"name": name, "shape": list(x.shape), "datatype": datatype, "data": x.tolist()}


async def test_kserve_v2_rest_answers_as_triton_does(gateway: RunningGateway, triton) -> None:  # type: ignore[no-untyped-def]
    url = base(gateway)
    x = np.stack([row(features(i)) for i in range(3)]).astype(np.float32)

    assert (await call("GET", f"{url}/v2/health/live")).json() == {"live": True}
    ready = await call("GET", f"{url}/v2/health/ready")
    assert ready.status_code == 200 and ready.json() == {"ready": True}
    server = (await call("GET", f"{url}/v2")).json()
    assert server["name"] == "aifactory-gateway" and "model_repository" not in server["extensions"]
    meta = (await call("GET", f"{url}/v2/models/loan_approval")).json()
    assert meta["inputs"] == [{"name": "INPUT", "datatype": "FP32", "shape": [-1, WIDTH]}]
    assert meta["outputs"][0]["name"] == "OUTPUT" and meta["versions"] == ["1"]
    assert (await call("GET", f"{url}/v2/models/loan_approval/versions/1")).json()["inputs"] == meta["inputs"]
    assert (await call("GET", f"{url}/v2/models/loan_approval/ready")).json() == {
        "name": "loan_approval",
        "ready": True,
    }
    assert (await call("GET", f"{url}/v2/models/loan_approval/versions/1/ready")).status_code == 200

    reply = await call(
        "POST", f"{url}/v2/models/loan_approval/infer", {"id": "rest-1", "inputs": [v2_input(x)]}
    )
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["id"] == "rest-1" and body["model_version"] == "1" and body["model_name"] == "loan_approval"
    (out,) = body["outputs"]
    assert out["name"] == "OUTPUT" and out["datatype"] == "FP32" and out["shape"] == [3, 2]

    def direct() -> np.ndarray:
        client = grpcclient.InferenceServerClient(triton.grpc_url)
        try:
            tensor = grpcclient.InferInput("INPUT", list(x.shape), "FP32")
            tensor.set_data_from_numpy(x)
            return client.infer("loan_approval", [tensor], model_version="1").as_numpy("OUTPUT")  # type: ignore[no-any-return]
        finally:
            client.close()

    np.testing.assert_allclose(
        np.array(out["data"]).reshape(3, 2), await asyncio.to_thread(direct), rtol=1e-6
    )
    # Flat data, a pinned version, and a prediction id made by the gateway.
    flat = {"name": "INPUT", "shape": [1, WIDTH], "datatype": "FP32", "data": x[0].tolist()}
    pinned = (
        await call("POST", f"{url}/v2/models/loan_approval/versions/1/infer", {"inputs": [flat]})
    ).json()
    assert len(pinned["id"]) == 32 and pinned["outputs"][0]["data"] == pytest.approx(
        out["data"][:2], rel=1e-6
    )

    for path, body, status, field in [
        ("/v2/models/nope/infer", {"inputs": [v2_input(x)]}, 404, None),
        ("/v2/models/loan_approval/versions/7/infer", {"inputs": [v2_input(x)]}, 404, None),
        ("/v2/models/loan_approval/infer", {"inputs": [v2_input(x[:, :5].copy())]}, 400, "inputs.INPUT"),
        (
            "/v2/models/loan_approval/infer",
            {"inputs": [v2_input(x.astype(np.int64), datatype="INT64")]},
            400,
            "inputs.INPUT",
        ),
        (
            "/v2/models/loan_approval/infer",
            {"inputs": [v2_input(x, name="FEATURES")]},
            400,
            "inputs.FEATURES",
        ),
        ("/v2/models/loan_approval/infer", {"inputs": [{**flat, "data": [1.0]}]}, 400, "inputs[0].data"),
        ("/v2/models/loan_approval/infer", b"{not json", 400, "body"),
        (
            "/v2/models/loan_approval/infer",
            {"inputs": [{**flat, "data": [float("nan")] * WIDTH}]},
            400,
            "body",
        ),
        # Non-ASCII digits are no version (str.isdigit() says "²" is one).
        ("/v2/models/loan_approval/versions/²/infer", {"inputs": [v2_input(x)]}, 404, None),
        ("/v2/models/loan_approval/versions/²/ready", None, 404, None),
    ]:
        if isinstance(body, dict) and "NaN" in json.dumps(body):
            body = json.dumps(body).encode()  # Python writes NaN; it is no JSON
        reply = await call("GET" if path.endswith("ready") else "POST", url + path, body)
        assert reply.status_code == status, (path, reply.text)
        error = reply.json()["error"]
        assert error["code"] == ("NOT_FOUND" if status == 404 else "INVALID_ARGUMENT"), error
        assert error["field"] == field, error
    assert (await call("GET", f"{url}/v2/models/nope/ready")).status_code == 404

    def oversized() -> tuple[int, Any]:
        """A body announced over the gRPC servers' message limit is refused unread."""
        conn = http.client.HTTPConnection("127.0.0.1", gateway.service.http_port, timeout=30)
        try:
            conn.putrequest("POST", "/v1/predict")
            conn.putheader("content-type", "application/json")
            conn.putheader("content-length", str(64 * 1024 * 1024 + 1))
            conn.endheaders(b"{}")
            reply = conn.getresponse()
            return reply.status, json.loads(reply.read())
        finally:
            conn.close()

    status, body = await asyncio.to_thread(oversized)
    assert status == 413 and body["error"]["code"] == "RESOURCE_EXHAUSTED", body
    assert (await call("GET", f"{url}/no/such/path")).json()["error"]["code"] == "NOT_FOUND"


async def test_business_api_over_http_matches_grpc(
    gateway: RunningGateway, kafka, topics, feature_store
) -> None:  # type: ignore[no-untyped-def]
    url = base(gateway)
    inline = await call("POST", f"{url}/v1/predict", {"use_case": "loan_approval", "features": features(7)})
    assert inline.status_code == 200, inline.text
    p = inline.json()["prediction"]
    async with grpc.aio.insecure_channel(gateway.grpc_url) as channel:
        stub = gw_grpc.GatewayServiceStub(channel)
        over_grpc = (
            await stub.Predict(
                gw_pb.PredictRequest(use_case="loan_approval", features=as_values(features(7)))
            )
        ).prediction
    assert p["model"] == {"use_case": "loan_approval", "model_name": "loan_approval", "version": 1}
    assert len(p["prediction_id"]) == 32 and p["prediction_id"] != over_grpc.prediction_id
    assert math.isclose(p["output"], over_grpc.output.double_value, rel_tol=1e-6)
    assert set(p["outputs"]) == {"p_0", "p_1", "label"} and p["outputs"]["label"] in (0, 1)

    by_id = (await call("POST", f"{url}/v1/predict", {"use_case": "loan_approval", "entity_id": "a7"})).json()
    assert by_id["prediction"]["entity_id"] == "a7" and feature_store[1].calls == 1
    assert math.isclose(by_id["prediction"]["output"], p["output"], rel_tol=1e-5)

    batch = await call(
        "POST",
        f"{url}/v1/predict-batch",
        {
            "use_case": "loan_approval",
            "inputs": [
                {"entity_id": "a1"},
                {"features": {**features(2), "salary": "lots"}},
                {"entity_id": "zz-unknown"},
                {"entity_id": "a3", "features": {"age": 99}},
            ],
        },
    )
    got = batch.json()["predictions"]
    assert batch.status_code == 200 and len(got) == 4
    assert got[0]["prediction_id"] and "error" not in got[0]
    assert "INVALID_ARGUMENT" in got[1]["error"] and "inputs[1].features.salary" in got[1]["error"]
    assert "NOT_FOUND" in got[2]["error"] and "prediction_id" not in got[2]
    assert got[3]["prediction_id"] and got[3]["entity_id"] == "a3"

    for path, body, status, field in [
        ("/v1/predict", {"use_case": "nope", "entity_id": "a1"}, 404, None),
        (
            "/v1/predict",
            {"use_case": "loan_approval", "features": {**features(1), "elevel": 9}},
            400,
            "features.elevel",
        ),
        (
            "/v1/predict",
            {"use_case": "loan_approval", "features": {**features(1), "zzz": 1.0}},
            400,
            "features.zzz",
        ),
        ("/v1/predict", {"use_case": "loan_approval", "features": {"age": [1]}}, 400, "features.age"),
        ("/v1/predict", {"use_case": "loan_approval"}, 400, "entity_id"),
        ("/v1/predict", {"entity_id": "a1"}, 400, "use_case"),
        ("/v1/predict", {"use_case": "loan_approval", "entity": "a1"}, 400, "entity"),
        ("/v1/predict", [1, 2], 400, "body"),
        ("/v1/predict-batch", {"use_case": "loan_approval", "inputs": []}, 400, "inputs"),
        (
            "/v1/feedback",
            {"use_case": "loan_approval", "prediction_id": p["prediction_id"], "outcome": "maybe"},
            400,
            "outcome",
        ),
        (
            "/v1/feedback",
            {"use_case": "loan_approval", "prediction_id": "x" * 200, "outcome": 1},
            400,
            "prediction_id",
        ),
        (
            "/v1/feedback",
            {"prediction_id": p["prediction_id"], "outcome": 1, "observed_at": "yesterday"},
            400,
            "observed_at",
        ),
    ]:
        reply = await call("POST", url + path, body)
        assert reply.status_code == status, (body, reply.text)
        error = reply.json()["error"]
        assert error["field"] == field and (field or "") in error["message"], error

    feedback_id = uuid.uuid4().hex
    # After the prediction (the gateway clamps an outcome's time into [prediction, now]).
    observed = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=1)
    await asyncio.sleep(max(0.0, (observed - datetime.now(UTC)).total_seconds()))
    recorded = await call(
        "POST",
        f"{url}/v1/feedback",
        {
            "use_case": "loan_approval",
            "prediction_id": by_id["prediction"]["prediction_id"],
            "outcome": 1,
            "feedback_id": feedback_id,
            "observed_at": observed.strftime("%Y-%m-%dT%H:%M:%SZ"),
        },
    )
    assert recorded.status_code == 200 and recorded.json() == {"feedback_id": feedback_id}
    ((event, headers),) = await read_events(
        kafka.bootstrap_servers, topics["feedback_topic"], events_pb2.FeedbackRecorded, 1
    )
    assert event.prediction_id == by_id["prediction"]["prediction_id"] and event.entity_id == "a7"
    assert event.outcome.int64_value == 1 and event.observed_at.ToDatetime(UTC) == observed
    assert headers["aif-event-id"] == feedback_id.encode()
    # Predictions over HTTP are logged like any other, with the caller's trace id.
    trace_id = uuid.uuid4().hex
    traced = await call(
        "POST",
        f"{url}/v1/predict",
        {"use_case": "loan_approval", "entity_id": "a9"},
        headers={"traceparent": f"00-{trace_id}-{'1' * 16}-01"},
    )
    pid = traced.json()["prediction"]["prediction_id"]
    # inline, by id, 2 of the batch, the gRPC one, this one: 6 predictions logged.
    logged = await read_events(
        kafka.bootstrap_servers, topics["predictions_topic"], events_pb2.PredictionLogged, 6
    )
    (mine,) = [e for e, _ in logged if e.prediction_id == pid]
    assert mine.trace_id == trace_id and mine.entity_id == "a9"


async def test_http_takes_the_same_tokens_as_grpc(triton, kafka, topics, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from libs.auth import DevAuth

    auth = DevAuth(tmp_path / "auth").ensure()
    settings = gateway_settings(
        triton.grpc_url,
        kafka.bootstrap_servers,
        static_aliases="loan_approval:champion=1",
        auth_mode="jwt",
        auth_dir=auth.directory,
        **topics,
        **control(triton),
    )
    gw = await ready(await start_gateway(settings))
    url = base(gw)
    app = {"authorization": "Bearer " + auth.issue("shop", {"loan_approval": ["app"]})}
    other = {"authorization": "Bearer " + auth.issue("shop", {"image_segments": ["app"]})}
    x = row(features(2))[None, :].astype(np.float32)
    infer = {"inputs": [v2_input(x)]}
    predict = {"use_case": "loan_approval", "features": features(2)}
    try:
        assert (await call("GET", f"{url}/v2/health/live")).status_code == 200  # open, like health checks
        assert (await call("GET", f"{url}/v2/health/ready")).status_code == 200
        for path, body in (("/v2/models/loan_approval/infer", infer), ("/v1/predict", predict)):
            assert (await call("POST", url + path, body, headers=dict(app))).status_code == 200
            for headers, status, code in (
                ({}, 401, "UNAUTHENTICATED"),
                ({"authorization": "Bearer not-a-token"}, 401, "UNAUTHENTICATED"),
                (dict(other), 403, "PERMISSION_DENIED"),
            ):
                reply = await call("POST", url + path, body, headers=headers)
                assert reply.status_code == status, (path, headers, reply.text)
                assert reply.json()["error"]["code"] == code
                if status == 401:
                    assert reply.headers["www-authenticate"] == "Bearer"
            # Credentials come before the body: a caller without them gets no parser time.
            garbage = await call("POST", url + path, b"{not json")
            assert garbage.status_code == 401, garbage.text
        for path in ("/v2/models/loan_approval", "/v2/models/loan_approval/ready"):
            assert (await call("GET", url + path)).status_code == 401
            assert (await call("GET", url + path, headers=dict(app))).status_code == 200
            assert (await call("GET", url + path, headers=dict(other))).status_code == 403
    finally:
        await gw.stop()


async def test_openapi_document_holds_under_schemathesis(gateway: RunningGateway, tmp_path: Path) -> None:
    """schemathesis (its CLI, a real outside client) generates valid and invalid requests for
    every operation of /openapi.json: no 5xx, every status, content type, header and body
    as documented."""
    url = base(gateway)
    document = (await call("GET", f"{url}/openapi.json")).json()
    assert document["openapi"].startswith("3.1") and "/v1/predict" in document["paths"]
    report = tmp_path / "schemathesis.json"
    cli = Path(sys.executable).with_name("schemathesis")
    proc = await asyncio.create_subprocess_exec(
        str(cli),
        "run",
        f"{url}/openapi.json",
        "--checks",
        "not_a_server_error,status_code_conformance,content_type_conformance,"
        "response_headers_conformance,response_schema_conformance",
        "--phases",
        "examples,coverage,fuzzing",
        "--max-examples",
        os.environ.get("AIF_SCHEMATHESIS_EXAMPLES", "40"),
        "--seed",
        "17",
        "--generation-database",
        "none",
        "--request-timeout",
        "10",
        "--no-color",
        "--report",
        "json",
        "--report-json-path",
        str(report),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        cwd=tmp_path,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=240)
    text = out.decode(errors="replace")
    assert proc.returncode == 0, text[-6000:]
    run = json.loads(report.read_text())
    operations = sum(len(item) for item in document["paths"].values())
    # It ran, on every operation, from the documented examples (which pass) to hostile input.
    assert run["operations"]["tested"] == run["operations"]["selected"] == operations == 12, run["operations"]
    assert run["phases"]["examples"]["status"] == "success", run["phases"]
    assert run["test_cases"]["generated"] >= 100 and run["test_cases"]["with_failures"] == 0, run[
        "test_cases"
    ]
    assert run["failures"] == [] and run["errors"] == []
