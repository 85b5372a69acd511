"""Hysteresis for a windowed drift signal: it raises after ``needed`` consecutive windows
over threshold and clears after ``needed`` consecutive windows under, so one noisy
window neither raises nor clears an alarm (no flapping)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Hysteresis:
    needed: int
    over: int = 0
    under: int = 0
    active: bool = False

    def update(self, drifted: bool) -> bool | None:
        """Record one window; True when the signal just raised, False when it just cleared."""
        if drifted:
            self.over, self.under = self.over + 1, 0
            if not self.active and self.over >= self.needed:
                self.active = True
                return True
        else:
            self.over, self.under = 0, self.under + 1
            if self.active and self.under >= self.needed:
                self.active = False
                return False
        return None

    def raise_now(self) -> bool:
        """Raise without waiting (a sequential test that has its own false-alarm control);
        True when it was not active."""
        was = self.active
        self.active, self.over, self.under = True, max(self.over, self.needed), 0
        return not was
