"""The closed loop, driven from outside as users would: ``make demo`` and the e2e test."""
from libs.loop import report
from libs.loop.driver import LoopConfig, LoopDriver, LoopResult
from libs.loop.quality import Served, phase_quality

__all__ = ["LoopConfig", "LoopDriver", "LoopResult", "Served", "phase_quality", "report"]
