"""OTLP encoding of finished spans at a fraction of the SDK encoder's cost.

The SDK's encoder (``encode_spans``) builds a protobuf object per span, per attribute
and per value in Python: some 40 µs a span on this project's machines, paid in the
exporter's thread while the service's event loop waits for the GIL (the gateway at
concurrency 8 lost some 9 % of its throughput to it). :class:`SpanEncoder` writes the
same ``ExportTraceServiceRequest`` on the wire directly: a span's ids and times are packed
in two calls, and the rest of it (name, kind, attributes, status, flags: the same few
values on every span of one kind) is remembered whole, as are resources and scopes. Spans
with events or links, and attribute values other than str, bool, int and float, go
through the SDK's own encoder: the result parses to a message equal to the SDK's
(tests.unit.libs.test_spanwire checks it).

A span whose tail is remembered is encoded by compiled code when ``make setup`` has built
it (``_spanwire.c``, next to this file): about 1 µs a span instead of 4 µs idle (and
13-19 µs in a busy gateway). Without it (no C compiler where the service was installed)
the Python below does the same, byte for byte.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

from opentelemetry.exporter.otlp.proto.common._internal import (
    _encode_attributes,
    _encode_instrumentation_scope,
    _encode_resource,
)
from opentelemetry.exporter.otlp.proto.common._internal.trace_encoder import _encode_span
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, SpanFlags
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanKind, StatusCode

_span_field: Callable[[Any, dict[Any, bytes]], bytes | None] | None
try:
    from libs.telemetry._spanwire import span_field as _span_field
except ImportError:  # not compiled here: the Python encoding below
    _span_field = None

# Remembered encodings per kind of thing: beyond this many (attribute values that are
# ids, say), the cache starts again instead of growing.
MAX_CACHED = 4096
# Spans encoded between two pauses (some 0.2 ms of work), and the pause: the service's
# event loop waits at most that long for the GIL while a batch is encoded. A real sleep,
# not sleep(0): a thread that releases the GIL and asks for it at once usually gets it
# back before the woken event loop is scheduled, which then waits out the interpreter's
# switch interval (5 ms). 128 pauses a batch of 2,048 spans: some 25 ms of wall time in
# the exporter's thread, no CPU.
YIELD_EVERY = 16
YIELD_S = 0.0002

_KIND = {
    SpanKind.INTERNAL: Span.SpanKind.SPAN_KIND_INTERNAL,
    SpanKind.SERVER: Span.SpanKind.SPAN_KIND_SERVER,
    SpanKind.CLIENT: Span.SpanKind.SPAN_KIND_CLIENT,
    SpanKind.PRODUCER: Span.SpanKind.SPAN_KIND_PRODUCER,
    SpanKind.CONSUMER: Span.SpanKind.SPAN_KIND_CONSUMER,
}
_KINDS = {kind: bytes([value]) for kind, value in _KIND.items()}  # each value fits one byte
_LOCAL = SpanFlags.SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK
_REMOTE = _LOCAL | SpanFlags.SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK
_SCALARS = (str, bool, int, float)
_SAMPLED = 0x01  # TraceFlags.SAMPLED, without the property
_fixed32 = struct.Struct("<I").pack
# A span's fixed-size fields, keys given as arguments: ids (big-endian bytes), then times.
_HEAD = struct.Struct("<2s16s2s8s").pack
_HEAD_PARENT = struct.Struct("<2s16s2s8s2s8s").pack
_TIMES = struct.Struct("<1sQ1sQ").pack

# Field keys (field number << 3 | wire type) of opentelemetry.proto.trace.v1.Span and the
# messages around it.
_TRACE_ID = b"\x0a\x10"  # 1, 16 bytes
_SPAN_ID = b"\x12\x08"  # 2, 8 bytes
_TRACE_STATE = 3
_PARENT_ID = b"\x22\x08"  # 4, 8 bytes
_NAME = 5
_KIND_KEY = b"\x30"  # 6, varint
_START = b"\x39"  # 7, fixed64
_END = b"\x41"  # 8, fixed64
_ATTRIBUTE = 9
_DROPPED_ATTRIBUTES = b"\x50"  # 10, varint
_STATUS = 15
_FLAGS = b"\x85\x01"  # 16, fixed32
_LOCAL_FLAGS = _FLAGS + _fixed32(_LOCAL)
_REMOTE_FLAGS = _FLAGS + _fixed32(_REMOTE)
_STATUS_MESSAGE = 2
_STATUS_CODE = b"\x18"  # 3, varint
_SCOPE_SPANS_SPAN = 2
_SPAN_FIELD = b"\x12"  # ScopeSpans.spans: 2, length-delimited
_RESOURCE_SPANS_SCOPE = 2
_REQUEST_RESOURCE = 1


def _varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


# Length prefixes up to 4 KiB, made once: a span is a few hundred bytes.
_LENGTHS = [_varint(n) for n in range(1 << 12)]


def _field(number: int, data: bytes) -> bytes:
    """A length-delimited field: key, length, bytes."""
    return _varint(number << 3 | 2) + _varint(len(data)) + data


def _remembered(cache: dict[Any, bytes], key: Any, make: Callable[[], bytes]) -> bytes:
    found = cache.get(key)
    if found is None:
        if len(cache) >= MAX_CACHED:
            cache.clear()
        found = cache[key] = make()
    return found


class EncodedSpan:
    """A finished span already on the wire format (a ScopeSpans ``spans`` field), with what
    the request groups it by."""

    __slots__ = ("data", "instrumentation_scope", "resource")

    def __init__(self, resource: Resource, scope: InstrumentationScope | None, data: bytes) -> None:
        self.resource, self.instrumentation_scope, self.data = resource, scope, data


class SpanEncoder:
    """Spans → ``ExportTraceServiceRequest`` (see the module's docstring). One per exporter.
    Its caches are plain dicts: a get or a set is atomic under the GIL, and a lost race
    only encodes one value twice."""

    def __init__(self) -> None:
        self._attributes: dict[tuple[str, type, Any], bytes] = {}
        self._names: dict[str, bytes] = {}
        self._tails: dict[tuple[Any, ...], bytes] = {}
        self._statuses: dict[tuple[StatusCode, str | None], bytes] = {}
        self._scopes: dict[InstrumentationScope | None, bytes] = {}
        self._resources: dict[Resource, bytes] = {}

    def request(self, spans: Sequence[ReadableSpan]) -> ExportTraceServiceRequest:
        return ExportTraceServiceRequest.FromString(self.encode(spans))

    def encoded(self, span: ReadableSpan) -> EncodedSpan:
        """``span`` on the wire format now (:class:`EncodingSpanProcessor` calls it as a span
        ends), for :meth:`encode` to put into a request later."""
        # The SDK's fields where it has them, as in _span.
        resource = getattr(span, "_resource", None)
        scope = getattr(span, "_instrumentation_scope", None)
        return EncodedSpan(
            span.resource if resource is None else resource,
            span.instrumentation_scope if scope is None else scope,
            self._span(span),
        )

    def encode(self, spans: Sequence[ReadableSpan | EncodedSpan]) -> bytes:
        """The serialised request, grouped by resource and scope as the SDK's encoder does."""
        # Grouped by identity first: a provider's spans share one Resource and one scope
        # object, and hashing a Resource serialises its attributes to JSON (once a span,
        # that was some 40 % of the encoding). Equal objects are merged below.
        by_id: dict[tuple[int, int], tuple[Resource, InstrumentationScope | None, list[bytes]]] = {}
        for i, span in enumerate(spans, 1):
            key = (id(span.resource), id(span.instrumentation_scope))
            group = by_id.get(key)
            if group is None:
                group = by_id[key] = (span.resource, span.instrumentation_scope or None, [])
            if isinstance(span, EncodedSpan):
                group[2].append(span.data)
                continue
            group[2].append(self._span(span))
            if i % YIELD_EVERY == 0:
                # Let the service's threads have the GIL: without this they may wait for
                # the interpreter's switch interval (5 ms) while a batch is encoded.
                time.sleep(YIELD_S)
        groups: dict[Resource, dict[InstrumentationScope | None, list[bytes]]] = {}
        for resource, scope, encoded in by_id.values():
            groups.setdefault(resource, {}).setdefault(scope, []).extend(encoded)
        out = []
        for resource, scopes in groups.items():
            parts = [_remembered(self._resources, resource, lambda r=resource: self._resource(r))]  # type: ignore[misc]
            for scope, encoded in scopes.items():
                head = _remembered(self._scopes, scope, lambda s=scope: self._scope(s))  # type: ignore[misc]
                body = head + b"".join(encoded)  # each span already a ScopeSpans field
                parts.append(_field(_RESOURCE_SPANS_SCOPE, body))
            out.append(_field(_REQUEST_RESOURCE, b"".join(parts)))
        return b"".join(out)

    @staticmethod
    def _resource(resource: Resource) -> bytes:
        """A ResourceSpans without its scopes (they follow: protobuf takes fields in any order)."""
        return ResourceSpans(
            resource=_encode_resource(resource), schema_url=resource.schema_url
        ).SerializeToString()

    @staticmethod
    def _scope(scope: InstrumentationScope | None) -> bytes:
        return ScopeSpans(
            scope=_encode_instrumentation_scope(scope),  # type: ignore[arg-type]
            schema_url=(scope.schema_url if scope else "") or "",
        ).SerializeToString()

    def _span(self, span: ReadableSpan) -> bytes:
        """``span`` as the ``spans`` field of a ScopeSpans: key, length, Span message."""
        data = None if _span_field is None else _span_field(span, self._tails)
        return self._encode_span(span) if data is None else data

    def _encode_span(self, span: ReadableSpan) -> bytes:
        """:meth:`_span` in Python: every span (the compiled code only takes a span whose
        tail this remembers)."""
        # The SDK's own fields where it has them: its public properties copy the events,
        # links and attributes on every read. The equality tests against the SDK's encoder
        # catch a version that renames them.
        events, links = getattr(span, "_events", None), getattr(span, "_links", None)
        if events is None or links is None:
            events, links = span.events, span.links
        if events or links or getattr(events, "dropped", 0) or getattr(links, "dropped", 0):
            return _field(_SCOPE_SPANS_SPAN, _encode_span(span).SerializeToString())  # the SDK's way
        ctx = getattr(span, "_context", None) or span.get_span_context()
        start, end = span.start_time, span.end_time
        assert ctx is not None and start is not None and end is not None
        parent = span.parent
        if parent is None:
            head = _HEAD(
                _TRACE_ID, ctx.trace_id.to_bytes(16, "big"), _SPAN_ID, ctx.span_id.to_bytes(8, "big")
            )
        else:
            head = _HEAD_PARENT(
                _TRACE_ID,
                ctx.trace_id.to_bytes(16, "big"),
                _SPAN_ID,
                ctx.span_id.to_bytes(8, "big"),
                _PARENT_ID,
                parent.span_id.to_bytes(8, "big"),
            )
        if ctx.trace_state:
            state = ",".join(f"{k}={v}" for k, v in ctx.trace_state.items())
            head += _field(_TRACE_STATE, state.encode())
        body = (
            head
            + _TIMES(_START, start, _END, end)
            + self._tail(span, parent is not None and parent.is_remote)
        )
        size = len(body)
        return _SPAN_FIELD + (_LENGTHS[size] if size < len(_LENGTHS) else _varint(size)) + body

    def _tail(self, span: ReadableSpan, remote_parent: bool) -> bytes:
        """Everything of a Span message but its ids, trace state and times: name, kind,
        attributes, status and flags. Remembered whole: a service's spans of one kind carry
        the same few attribute values (a method, a model version), so most spans cost one
        dict lookup here."""
        attributes = getattr(span, "_attributes", None)
        items = getattr(attributes, "_dict", None)  # BoundedAttributes' plain dict
        if items is None:
            items = span.attributes or {}
        values = tuple(items.values())
        types = tuple(map(type, values))
        status = span.status
        # The value types are part of the key (True == 1 == 1.0, each encoded differently);
        # a sequence's items could be of either, so spans with one are not remembered. The
        # kind and status code are enum members, singletons: keyed by id, as hashing an
        # enum member runs Python code.
        key = None
        if tuple not in types and list not in types:
            key = (
                span.name,
                id(span.kind),
                id(status.status_code),
                status.description,
                remote_parent,
                getattr(attributes, "dropped", 0),
                tuple(items),
                values,
                types,
            )
            try:
                found = self._tails.get(key)
            except TypeError:  # a value that cannot be hashed: encoded every time
                found, key = None, None
            if found is not None:
                return found
        parts = [
            _remembered(self._names, span.name, lambda: _field(_NAME, span.name.encode())),
            _KIND_KEY,
            _KINDS[span.kind],
        ]
        known = self._attributes
        for name, value in items.items():
            if isinstance(value, _SCALARS):
                parts.append(
                    _remembered(known, (name, type(value), value), partial(self._attribute, name, value))
                )
            else:  # a sequence: not remembered (a list is not hashable)
                parts.append(self._attribute(name, value))
        if span.dropped_attributes:
            parts += (_DROPPED_ATTRIBUTES, _varint(span.dropped_attributes))
        parts.append(
            _remembered(
                self._statuses,
                (status.status_code, status.description),
                lambda: self._status(status.status_code, status.description),
            )
        )
        parts.append(_REMOTE_FLAGS if remote_parent else _LOCAL_FLAGS)
        tail = b"".join(parts)
        if key is not None:
            _remembered(self._tails, key, lambda: tail)
        return tail

    @staticmethod
    def _attribute(key: str, value: Any) -> bytes:
        encoded = _encode_attributes({key: value})
        return b"".join(_field(_ATTRIBUTE, kv.SerializeToString()) for kv in encoded or ())

    @staticmethod
    def _status(code: StatusCode, description: str | None) -> bytes:
        body = b""
        if description:
            body += _field(_STATUS_MESSAGE, description.encode())
        if code.value:
            body += _STATUS_CODE + _varint(code.value)
        return _field(_STATUS, body)


class EncodingSpanProcessor(BatchSpanProcessor):
    """The SDK's batch processor (queue, batches, schedule, flush, shutdown: the standard
    ``OTEL_BSP_*`` settings), queueing each span already encoded by ``encoder``, in the
    thread that ends it: a few microseconds there, instead of the whole batch's encoding
    in the exporter's thread. That thread held the GIL for tens of milliseconds a batch,
    and every handover of the GIL between it and the service's busy event loop cost the
    loop (the gateway at concurrency 8 lost 5-15 % of its throughput, at concurrency 1
    its p99 moved by up to 20 %). The exporter then only joins bytes and sends them."""

    def __init__(self, exporter: Any, encoder: SpanEncoder, **kwargs: Any) -> None:
        super().__init__(exporter, **kwargs)
        self._encoder = encoder

    def on_end(self, span: ReadableSpan) -> None:
        ctx = span.context
        if not (ctx and ctx.trace_flags & _SAMPLED):
            return
        self._batch_processor.emit(self._encoder.encoded(span))  # type: ignore[arg-type]
