"""A use case's raw record contract as JSON Schema (draft 2020-12), for producers.

It states what ingestion accepts as JSON (services/ingestion/validate.py): the declared
fields with their types, bounds, enums and lengths, ``record_id`` (the producer's id)
and nothing else. Ingestion is a little more lenient than the schema, which gives each
type's canonical form: an int may also come as a string of digits, a timestamp as
milliseconds since the epoch.
"""

from __future__ import annotations

from typing import Any

from libs.usecase import FieldSpec, UseCase

DIALECT = "https://json-schema.org/draft/2020-12/schema"
_TYPES = {"string": "string", "int": "integer", "float": "number", "bool": "boolean"}


def field_schema(spec: FieldSpec) -> dict[str, Any]:
    schema: dict[str, Any]
    if spec.type == "timestamp":
        schema = {"type": "string", "format": "date-time"}
    else:
        schema = {"type": _TYPES[spec.type]}
    if spec.type == "string":
        schema["maxLength"] = spec.max_length
    if spec.min is not None:
        schema["minimum"] = spec.min
    if spec.max is not None:
        schema["maximum"] = spec.max
    if spec.enum is not None:
        schema["enum"] = list(spec.enum)
    if spec.description:
        schema["description"] = spec.description
    if spec.pii != "none":
        # Not a validation keyword: tells the producer the factory treats it as personal data.
        schema["x-aif-pii"] = spec.pii
    return schema


def json_schema(usecase: UseCase, version: int | None = None) -> dict[str, Any]:
    """The JSON Schema of one raw record of ``usecase``."""
    properties = {name: field_schema(spec) for name, spec in usecase.fields.items()}
    if "record_id" not in properties:
        properties["record_id"] = {
            "type": ["string", "integer"],
            "maxLength": 256,
            "description": "the producer's record id (idempotency key)",
        }
    required = sorted(
        {name for name, spec in usecase.fields.items() if spec.required}
        | {usecase.entity.field, usecase.event_time.field}
    )
    return {
        "$schema": DIALECT,
        "$id": f"aif:usecase:{usecase.name}:v{version or usecase.version}",
        "title": f"{usecase.name} raw record",
        "description": usecase.description,
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": False,
    }
