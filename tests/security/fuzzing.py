"""Hypothesis strategies for hostile gRPC requests, built from the message descriptors.

Nothing here knows a service: a request type's descriptor gives its fields, and each
field type has a pool of extreme values (limits of its range, NaN and infinities,
unicode oddities, path traversal, injection strings, names of real use cases so the
fuzz reaches past the first check). Besides well-formed messages there are random
bytes, truncated encodings and hand-crafted wire-level traps (groups nested thousands
deep, lengths that overrun, invalid UTF-8, overlong varints).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from hypothesis import strategies as st

from aif.datagen import LoanStream, SegmentStream, to_json

F = FieldDescriptor
MAX_DEPTH = 4

USE_CASES = ["loan_approval", "image_segments"]
# Strings that have broken parsers, paths, SQL, templates and renderers somewhere.
STRINGS = [
    "",
    " ",
    "*",
    "0",
    "1",
    "-1",
    "99999999999999999999",
    "1e309",
    "NaN",
    "-Infinity",
    "null",
    "true",
    "{}",
    "[]",
    "champion",
    "challenger",
    "previous",
    "candidate",
    "latest",
    "../../../../../etc/passwd",
    "/etc/passwd",
    "..",
    ".",
    "C:\\Windows\\system32",
    "file:///etc/passwd",
    "s3://bucket/../../x",
    "http://169.254.169.254/latest/meta-data/",
    "sqlite:////tmp/x.db",
    "a\x00b",
    "\x00",
    "\x7f\x1b[31m",
    "\r\nInjected: header",
    "\u202egnp.exe",
    "\ufeffbom",
    "\u200b",
    "\uffff",
    "ǅǈǋ",
    "İstanbul",
    "ß",
    "𝔘𝔫𝔦𝔠𝔬𝔡𝔢",
    "👩\u200d👩\u200d👧\u200d👦",
    "Z̤͔ͧ̑̓ä͖̭̈̇lͮ̒ͫǫ̗͕",
    "'; DROP TABLE model_versions; --",
    '" OR 1=1 --',
    "%s%s%s%n",
    "{0.__class__}",
    "{{7*7}}",
    "${jndi:ldap://x/a}",
    "<script>alert(1)</script>",
    "loan_approval\x00",
    "LOAN_APPROVAL",
    "loan_approval/../image_segments",
    "loan_approval:champion",
    "a" * 300,
    "x" * 5000,
    "é" * 3000,
    "\n" * 200,
    "🙂" * 1000,
]
INT_LIMITS = {
    "int32": (-(2**31), 2**31 - 1),
    "int64": (-(2**63), 2**63 - 1),
    "uint32": (0, 2**32 - 1),
    "uint64": (0, 2**64 - 1),
}
_INT_KIND = {
    F.TYPE_INT32: "int32",
    F.TYPE_SINT32: "int32",
    F.TYPE_SFIXED32: "int32",
    F.TYPE_INT64: "int64",
    F.TYPE_SINT64: "int64",
    F.TYPE_SFIXED64: "int64",
    F.TYPE_UINT32: "uint32",
    F.TYPE_FIXED32: "uint32",
    F.TYPE_UINT64: "uint64",
    F.TYPE_FIXED64: "uint64",
}


def _json_records() -> list[str]:
    """Real records (valid and broken) for string fields that carry JSON."""
    loans = [e.record for _, e in zip(range(3), LoanStream(seed=7), strict=False)]
    segments = [e.record for _, e in zip(range(2), SegmentStream(seed=7), strict=False)]
    valid = [to_json(r).decode() for r in loans + segments]
    first = valid[0]
    return valid + [
        first[: len(first) // 2],
        first.replace('"salary":', '"salary": NaN, "x":'),
        first.replace("}", ', "age": 1e999}'),
        "[" * 50_000 + "]" * 50_000,
        '{"a":' * 20_000 + "1" + "}" * 20_000,
        '"' + "\\u0000" * 1000 + '"',
        '{"applicant_id": "\\ud800"}',
        '{"applicant_id": ' + "9" * 5000 + "}",
        "{}",
        "[]",
        "null",
        "1",
        '{"__proto__": {"admin": true}}',
        first.replace("{", '{"applicant_id": null, ', 1),
    ]


def _ints(kind: str) -> st.SearchStrategy[int]:
    lo, hi = INT_LIMITS[kind]
    edges = sorted(
        {
            v
            for v in (lo, lo + 1, -1, 0, 1, 2, 7, 1000, 10**9, 2**31 - 1, 2**31, 2**53 + 1, hi - 1, hi)
            if lo <= v <= hi
        }
    )
    return st.one_of(st.sampled_from(edges), st.integers(lo, hi))


@dataclass
class Pools:
    """Value strategies by field; built once (the JSON records come from the generators)."""

    strings: st.SearchStrategy[str]
    json: st.SearchStrategy[str]
    names: st.SearchStrategy[str]
    binary: st.SearchStrategy[bytes]

    @classmethod
    def build(cls) -> Pools:
        records = _json_records()
        text = st.text(max_size=40)
        strings = st.one_of(st.sampled_from(USE_CASES), st.sampled_from(STRINGS), text)
        return cls(
            strings=strings,
            json=st.one_of(st.sampled_from(records), text),
            names=st.one_of(st.sampled_from(USE_CASES * 3 + STRINGS[:20]), text),
            binary=st.one_of(
                st.binary(max_size=64),
                st.sampled_from(
                    [
                        b"",
                        b"\x00" * 1024,
                        b"\xff" * 100,
                        b"PK\x03\x04" + b"\x00" * 60,
                        b"\x80\x04\x95" + b"\x00" * 20,
                        *(r.encode() for r in records[:3]),
                    ]
                ),
            ),
        )


class MessageStrategies:
    """``message(descriptor)``: well-formed messages of that type with extreme field values."""

    def __init__(self, pools: Pools | None = None) -> None:
        self.pools = pools or Pools.build()
        self._cache: dict[tuple[str, int], st.SearchStrategy[Message]] = {}

    def message(self, descriptor: Descriptor, depth: int = 0) -> st.SearchStrategy[Message]:
        key = (descriptor.full_name, depth)
        if key not in self._cache:
            self._cache[key] = self._build(descriptor, depth)
        return self._cache[key]

    def _build(self, descriptor: Descriptor, depth: int) -> st.SearchStrategy[Message]:
        cls = message_factory.GetMessageClass(descriptor)
        fields = list(descriptor.fields)

        @st.composite
        def build(draw: st.DrawFn) -> Message:
            msg = cls()
            if depth >= MAX_DEPTH:
                return msg
            for field in fields:
                if not draw(st.booleans()):
                    continue
                _set(msg, field, draw, self, depth)
            return msg

        return build()

    def scalar(self, field: FieldDescriptor) -> st.SearchStrategy[Any]:
        t = field.type
        if t == F.TYPE_STRING:
            if field.name in ("json",):
                return self.pools.json
            if field.name in ("use_case", "model_name", "name", "alias", "feature_view"):
                return self.pools.names
            return self.pools.strings
        if t == F.TYPE_BYTES:
            return self.pools.binary
        if t == F.TYPE_BOOL:
            return st.booleans()
        if t == F.TYPE_DOUBLE:
            return st.one_of(
                st.sampled_from([float("nan"), float("inf"), float("-inf"), -0.0, 1e308, 5e-324]), st.floats()
            )
        if t == F.TYPE_FLOAT:
            return st.floats(width=32)
        if t == F.TYPE_ENUM:
            # Open enums: any int32 parses, known or not.
            return st.one_of(
                st.sampled_from([v.number for v in field.enum_type.values]), st.integers(-(2**31), 2**31 - 1)
            )
        return _ints(_INT_KIND[t])


def _set(
    msg: Message, field: FieldDescriptor, draw: st.DrawFn, strategies: MessageStrategies, depth: int
) -> None:
    name = field.name
    repeated = field.is_repeated
    if field.type == F.TYPE_MESSAGE and field.message_type.GetOptions().map_entry:
        key_field = field.message_type.fields_by_name["key"]
        value_field = field.message_type.fields_by_name["value"]
        target = getattr(msg, name)
        for _ in range(draw(st.integers(0, 4))):
            key = draw(strategies.scalar(key_field))
            if value_field.type == F.TYPE_MESSAGE:
                target[key].CopyFrom(draw(strategies.message(value_field.message_type, depth + 1)))
            else:
                target[key] = draw(strategies.scalar(value_field))
        return
    if field.type == F.TYPE_MESSAGE:
        sub = strategies.message(field.message_type, depth + 1)
        if repeated:
            target = getattr(msg, name)
            for value in draw(st.lists(sub, max_size=4)):
                target.add().CopyFrom(value)
        else:
            getattr(msg, name).CopyFrom(draw(sub))
        return
    if repeated:
        getattr(msg, name).extend(draw(st.lists(strategies.scalar(field), max_size=6)))
    else:
        setattr(msg, name, draw(strategies.scalar(field)))


# -- wire-level traps -------------------------------------------------------------------------


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def tag(number: int, wire: int) -> bytes:
    return varint((number << 3) | wire)


def crafted(descriptor: Descriptor) -> list[bytes]:
    """Encodings no well-behaved client sends, aimed at the request's own fields."""
    strings = [f.number for f in descriptor.fields if f.type == F.TYPE_STRING] or [1]
    messages = [f.number for f in descriptor.fields if f.type == F.TYPE_MESSAGE] or [2]
    number = strings[0]
    deep = 5000
    return [
        tag(1000, 3) * deep + tag(1000, 4) * deep,  # unknown groups nested 5000 deep
        (tag(messages[0], 2) + b"\x7f") * 200,  # nested lengths that overrun
        tag(number, 2) + varint(4) + b"\xff\xfe\xfd\xfc",  # invalid UTF-8 in a string
        tag(number, 2) + varint(2**31) + b"x",  # length far past the end
        tag(number, 2) + varint(2**64 - 1),  # length of 2^64-1
        tag(number, 0) + b"\xff" * 11,  # varint longer than 10 bytes
        b"\x00\x01",  # field number 0
        tag(2**29 - 1, 0) + b"\x01",  # largest field number
        tag(number, 5) + b"\x00\x00\x80\x7f",  # wrong wire type for the field
        tag(number, 6) + b"\x00",  # wire type 6 does not exist
        tag(number, 2) + varint(3) + b"abc" + tag(number, 2) + varint(3) + b"xyz" * 1000,
        b"\x0a\x80\x80\x80\x80\x10",  # length that does not fit 32 bits
    ]


def truncations(data: bytes) -> st.SearchStrategy[bytes]:
    if len(data) < 2:
        return st.just(data[:0])
    return st.integers(1, len(data) - 1).map(lambda cut: data[:cut])


@dataclass(frozen=True)
class Body:
    kind: str  # message | random | truncated | crafted
    data: bytes


def bodies(request: type[Message], strategies: MessageStrategies) -> st.SearchStrategy[Body]:
    descriptor = request.DESCRIPTOR
    messages = strategies.message(descriptor)
    return st.one_of(
        messages.map(lambda m: Body("message", m.SerializeToString())),
        messages.map(lambda m: Body("message", m.SerializeToString())),
        st.binary(max_size=512).map(lambda b: Body("random", b)),
        messages.flatmap(lambda m: truncations(m.SerializeToString())).map(lambda b: Body("truncated", b)),
        st.sampled_from(crafted(descriptor)).map(lambda b: Body("crafted", b)),
    )


# -- big messages within (and past) the 64 MiB cap ---------------------------------------------


def huge(
    request: type[Message],
    *,
    string_bytes: int = 256 * 1024,
    items: int = 20_000,
    budget: int = 48 * 1024 * 1024,
) -> Message:
    """Every field at its largest sensible size: long strings, long repeated fields, wide maps,
    extreme numbers; a few levels deep. Shrinks itself to stay within ``budget`` bytes."""
    while True:
        msg = request()
        _fill(msg, string_bytes, items, 0)
        if msg.ByteSize() <= budget:
            return msg
        string_bytes //= 2
        items //= 2


def _fill(msg: Message, string_bytes: int, items: int, depth: int) -> None:
    if depth > 2:
        return
    for field in msg.DESCRIPTOR.fields:
        name = field.name
        repeated = field.is_repeated
        value: Any = _extreme(field, string_bytes)
        if field.type == F.TYPE_MESSAGE and field.message_type.GetOptions().map_entry:
            target = getattr(msg, name)
            value_field = field.message_type.fields_by_name["value"]
            key_field = field.message_type.fields_by_name["key"]
            for i in range(items):
                key = f"k{i}" if key_field.type == F.TYPE_STRING else i
                if value_field.type == F.TYPE_MESSAGE:
                    _fill(target[key], 16, 2, depth + 3)
                else:
                    target[key] = _extreme(value_field, 16)
        elif field.type == F.TYPE_MESSAGE:
            if repeated:
                target = getattr(msg, name)
                for _ in range(items):
                    _fill(target.add(), 16, 2, depth + 1)
            else:
                _fill(getattr(msg, name), string_bytes, items, depth + 1)
        elif repeated:
            # Many short items (a long list of long strings would only measure memory).
            getattr(msg, name).extend([_extreme(field, 16)] * (items * 5))
        else:
            setattr(msg, name, value)


def _extreme(field: FieldDescriptor, string_bytes: int) -> Any:
    t = field.type
    if t == F.TYPE_STRING:
        return "é" * (string_bytes // 2)
    if t == F.TYPE_BYTES:
        return b"\xff" * string_bytes
    if t == F.TYPE_BOOL:
        return True
    if t in (F.TYPE_DOUBLE, F.TYPE_FLOAT):
        return float("nan")
    if t == F.TYPE_ENUM:
        return 2**31 - 1
    if t == F.TYPE_MESSAGE:
        return None
    return INT_LIMITS[_INT_KIND[t]][1]


def over_cap(request: type[Message], cap: int) -> bytes:
    """One encoded request just past ``cap`` bytes (a string or bytes field, else unknown bytes)."""
    field = next(
        (
            f
            for f in request.DESCRIPTOR.fields
            if f.type in (F.TYPE_STRING, F.TYPE_BYTES) and not f.is_repeated
        ),
        None,
    )
    number = field.number if field is not None else 1000
    return tag(number, 2) + varint(cap + 1024) + b"a" * (cap + 1024)


Caller = Callable[[list[bytes]], Any]
