# libs/telemetry/_spanwire.c, compiled by `make setup`.
from typing import Any

def span_field(span: Any, tails: dict[Any, bytes], /) -> bytes | None: ...
