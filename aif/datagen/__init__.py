"""Data generators for the shipped use cases, built on data that ships inside river.

Each generator yields :class:`Example` objects: the record a business producer would
send (JSON-ready, field names as in the use-case spec) and its label with the time
the label becomes known. Deterministic for a seed, so tests and the demo can
compute expected results independently.
"""

from __future__ import annotations

from aif.datagen.base import Example, to_json
from aif.datagen.loan import LoanStream
from aif.datagen.segments import SegmentStream

GENERATORS = {"loan_approval": LoanStream, "image_segments": SegmentStream}

__all__ = ["GENERATORS", "Example", "LoanStream", "SegmentStream", "to_json"]
