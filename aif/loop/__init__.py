"""The closed loop, driven from outside as users would: ``make demo`` and the e2e test."""

from aif.loop import report
from aif.loop.driver import LoopConfig, LoopDriver, LoopResult
from aif.loop.quality import Served, phase_quality

__all__ = ["LoopConfig", "LoopDriver", "LoopResult", "Served", "phase_quality", "report"]
