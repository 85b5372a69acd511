"""The OpenAPI 3.1 document of the gateway's HTTP/JSON API (:mod:`services.gateway.http`),
served at ``/openapi.json``: the KServe v2 REST binding and the business API."""

from __future__ import annotations

from typing import Any

from libs.rpc.server import MAX_MESSAGE_BYTES

_MAX_BATCH = 4096  # services.gateway.core.MAX_BATCH (not imported: core pulls in Triton's client)


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    meaning = {
        400: "invalid input (the error names the field)",
        401: "missing or invalid bearer token",
        403: "the token lacks the permission in this use case",
        404: "unknown model, version, use case or entity",
        413: "request body too large",
        503: "Triton or the feature store is unavailable: retry with backoff",
    }
    out = {str(c): _json(_ref("Error"), meaning[c]) for c in codes}
    out["default"] = _json(_ref("Error"), "any other error, with its gRPC status code name")
    return out


_SCALAR = {"type": ["number", "string", "boolean", "null"], "description": "a feature or outcome value"}
_NAME = {
    "name": "name",
    "in": "path",
    "required": True,
    "schema": {"type": "string"},
    "description": "use case",
    "example": "loan_approval",
}
_VERSION = {
    "name": "version",
    "in": "path",
    "required": True,
    "schema": {"type": "string"},
    "description": "a served model version (digits)",
    "example": "1",
}
_BEARER: list[dict[str, list[str]]] = [{"bearer": []}]


# Requests that succeed on a factory serving the shipped loan_approval use case (clients and
# schemathesis start from them): a row in the model's input order, 25 columns.
_ROW = [
    52000.0,
    0.0,
    41,
    0,
    0,
    1,
    0,
    0,
    3,
    0,
    1,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    150000.0,
    10,
    120000.0,
    2.3,
    1,
    120000.0,
    120000.0,
]
EXAMPLES: dict[str, Any] = {
    "InferRequest": {
        "inputs": [{"name": "INPUT", "shape": [1, len(_ROW)], "datatype": "FP32", "data": _ROW}]
    },
    "PredictRequest": {"use_case": "loan_approval", "entity_id": "a42"},
    "PredictBatchRequest": {
        "use_case": "loan_approval",
        "inputs": [{"entity_id": "a1"}, {"entity_id": "a2"}],
    },
    "FeedbackRequest": {
        "use_case": "loan_approval",
        "prediction_id": "0123456789abcdef0123456789abcdef",
        "outcome": 1,
    },
}


def _op(summary: str, responses: dict[str, Any], body: str | None = None, **extra: Any) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "responses": responses, **extra}
    if body is not None:
        media = {"schema": _ref(body), "example": EXAMPLES[body]}
        op["requestBody"] = {"required": True, "content": {"application/json": media}}
    return op


def _model_paths(versioned: bool) -> dict[str, Any]:
    params = [_NAME, _VERSION] if versioned else [_NAME]
    where = " (a pinned version)" if versioned else " (its champion)"
    return {
        "": {
            "get": _op(
                "Model metadata" + where,
                {
                    "200": _json(_ref("ModelMetadata"), "the model's inputs and outputs"),
                    **_errors(401, 403, 404, 503),
                },
                parameters=params,
                security=_BEARER,
            )
        },
        "/ready": {
            "get": _op(
                "Model readiness" + where + ": 200 ready, 400 not ready",
                {
                    "200": _json(_ref("ModelReady"), "ready"),
                    "400": _json({"oneOf": [_ref("ModelReady"), _ref("Error")]}, "not ready"),
                    **{k: v for k, v in _errors(401, 403, 404, 503).items() if k != "400"},
                },
                parameters=params,
                security=_BEARER,
            )
        },
        "/infer": {
            "post": _op(
                "Inference (KServe v2 JSON tensors)" + where,
                {
                    "200": _json(_ref("InferResponse"), "the model's outputs"),
                    **_errors(400, 401, 403, 404, 413, 503),
                },
                "InferRequest",
                parameters=params,
                security=_BEARER,
            )
        },
    }


def document() -> dict[str, Any]:
    paths: dict[str, Any] = {
        "/v2/health/live": {
            "get": _op(
                "Server liveness (open)", {"200": _json(_ref("Live"), "live"), **_errors()}, security=[]
            )
        },
        "/v2/health/ready": {
            "get": _op(
                "Server readiness (open): 200 ready, 400 not ready (Triton down, a champion not loaded)",
                {"200": _json(_ref("Ready"), "ready"), "400": _json(_ref("Ready"), "not ready"), **_errors()},
                security=[],
            )
        },
        "/v2": {
            "get": _op(
                "Server metadata (open)",
                {"200": _json(_ref("ServerMetadata"), "name, version, extensions"), **_errors(503)},
                security=[],
            )
        },
        "/v1/predict": {
            "post": _op(
                "One prediction, by entity id (features read online) and/or inline features",
                {
                    "200": _json(_ref("PredictResponse"), "the prediction"),
                    **_errors(400, 401, 403, 404, 413, 503),
                },
                "PredictRequest",
                security=_BEARER,
            )
        },
        "/v1/predict-batch": {
            "post": _op(
                "Several predictions of one use case; a bad input fails only its own answer",
                {
                    "200": _json(_ref("PredictBatchResponse"), "one prediction per input, in order"),
                    **_errors(400, 401, 403, 404, 413, 503),
                },
                "PredictBatchRequest",
                security=_BEARER,
            )
        },
        "/v1/feedback": {
            "post": _op(
                "The outcome of an earlier prediction (published as FeedbackRecorded)",
                {"200": _json(_ref("FeedbackResponse"), "recorded"), **_errors(400, 401, 403, 404, 413, 503)},
                "FeedbackRequest",
                security=_BEARER,
            )
        },
    }
    for versioned, prefix in ((False, "/v2/models/{name}"), (True, "/v2/models/{name}/versions/{version}")):
        for suffix, item in _model_paths(versioned).items():
            paths[prefix + suffix] = item
    tensor_meta = {
        "type": "object",
        "required": ["name", "datatype", "shape"],
        "properties": {
            "name": {"type": "string"},
            "datatype": {"type": "string"},
            "shape": {"type": "array", "items": {"type": "integer"}},
        },
    }
    params = {
        "type": "object",
        "additionalProperties": {"type": ["string", "number", "boolean"]},
        "description": "protocol parameters, e.g. entity_id (canary stickiness)",
    }
    string = {"type": "string"}
    schemas: dict[str, Any] = {
        "Error": {
            "type": "object",
            "required": ["error"],
            "properties": {
                "error": {
                    "type": "object",
                    "required": ["code", "message", "field"],
                    "properties": {
                        "code": {
                            "type": "string",
                            "description": "gRPC status code name, e.g. INVALID_ARGUMENT",
                        },
                        "message": string,
                        "field": {
                            "type": ["string", "null"],
                            "description": "the offending field (dotted path)",
                        },
                    },
                }
            },
        },
        "Live": {"type": "object", "required": ["live"], "properties": {"live": {"type": "boolean"}}},
        "Ready": {"type": "object", "required": ["ready"], "properties": {"ready": {"type": "boolean"}}},
        "ModelReady": {
            "type": "object",
            "required": ["name", "ready"],
            "properties": {"name": string, "ready": {"type": "boolean"}},
        },
        "ServerMetadata": {
            "type": "object",
            "required": ["name", "version", "extensions"],
            "properties": {
                "name": string,
                "version": string,
                "extensions": {"type": "array", "items": string},
            },
        },
        "ModelMetadata": {
            "type": "object",
            "required": ["name", "versions", "platform", "inputs", "outputs"],
            "properties": {
                "name": string,
                "versions": {"type": "array", "items": string},
                "platform": string,
                "inputs": {"type": "array", "items": tensor_meta},
                "outputs": {"type": "array", "items": tensor_meta},
            },
        },
        "InferRequest": {
            "type": "object",
            "required": ["inputs"],
            "additionalProperties": False,
            "properties": {
                "id": string,
                "parameters": params,
                "inputs": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["name", "shape", "datatype", "data"],
                        "additionalProperties": False,
                        "properties": {
                            "name": {"type": "string", "description": "INPUT for every model of the factory"},
                            "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
                            "datatype": {
                                "type": "string",
                                "description": "FP32 for every model of the factory",
                            },
                            "parameters": params,
                            "data": {"type": "array", "description": "row-major values, flat or nested"},
                        },
                    },
                },
                "outputs": {
                    "type": "array",
                    "items": {"type": "object", "required": ["name"], "properties": {"name": string}},
                },
            },
        },
        "InferResponse": {
            "type": "object",
            "required": ["model_name", "model_version", "id", "outputs"],
            "properties": {
                "model_name": string,
                "model_version": string,
                "id": {"type": "string", "description": "the prediction id (given or made by the gateway)"},
                "parameters": params,
                "outputs": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["name", "datatype", "shape", "data"],
                        "properties": {
                            "name": string,
                            "datatype": string,
                            "shape": {"type": "array", "items": {"type": "integer"}},
                            "parameters": params,
                            "data": {
                                "type": "array",
                                "items": {"type": ["number", "string", "boolean", "null"]},
                                "description": "flat, row-major; null for a non-finite value",
                            },
                        },
                    },
                },
            },
        },
        "Features": {
            "type": "object",
            "additionalProperties": _SCALAR,
            "description": "inline features by name; a one-hot feature as its raw category or its columns",
        },
        "PredictRequest": {
            "type": "object",
            "required": ["use_case"],
            "additionalProperties": False,
            "properties": {"use_case": string, "entity_id": string, "features": _ref("Features")},
        },
        "PredictionInput": {
            "type": "object",
            "additionalProperties": False,
            "properties": {"entity_id": string, "features": _ref("Features")},
        },
        "PredictBatchRequest": {
            "type": "object",
            "required": ["use_case", "inputs"],
            "additionalProperties": False,
            "properties": {
                "use_case": string,
                "inputs": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": _MAX_BATCH,
                    "items": _ref("PredictionInput"),
                },
            },
        },
        "ModelRef": {
            "type": "object",
            "required": ["use_case", "model_name", "version"],
            "properties": {"use_case": string, "model_name": string, "version": {"type": "integer"}},
        },
        "Prediction": {
            "type": "object",
            "required": ["entity_id"],
            "properties": {
                "prediction_id": string,
                "entity_id": string,
                "model": _ref("ModelRef"),
                "output": {
                    **_SCALAR,
                    "description": "binary: P(positive class); multiclass: the class; regression: the value",
                },
                "outputs": {"type": "object", "additionalProperties": _SCALAR},
                "error": {
                    "type": "string",
                    "description": "set, in a batch, when this input could not be scored",
                },
            },
        },
        "PredictResponse": {
            "type": "object",
            "required": ["prediction"],
            "properties": {"prediction": _ref("Prediction")},
        },
        "PredictBatchResponse": {
            "type": "object",
            "required": ["predictions"],
            "properties": {"predictions": {"type": "array", "items": _ref("Prediction")}},
        },
        "FeedbackRequest": {
            "type": "object",
            "required": ["prediction_id", "outcome"],
            "additionalProperties": False,
            "properties": {
                "use_case": {
                    "type": "string",
                    "description": "required unless this gateway remembers the prediction",
                },
                "prediction_id": string,
                "outcome": _SCALAR,
                "observed_at": {"type": "string", "format": "date-time"},
                "feedback_id": {"type": "string", "description": "idempotency key"},
                "record_id": string,
                "event_time": {"type": "string", "format": "date-time"},
                "entity_id": string,
            },
        },
        "FeedbackResponse": {
            "type": "object",
            "required": ["feedback_id"],
            "properties": {"feedback_id": string},
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "AI Factory gateway",
            "version": "1",
            "description": "KServe v2 REST (the Open Inference Protocol) and the business API over HTTP/JSON. "
            f"Bodies are at most {MAX_MESSAGE_BYTES} bytes. Errors: "
            '{"error": {"code": <gRPC status name>, "message": ..., "field": <dotted path or null>}}.',
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
        },
        "security": _BEARER,
    }
