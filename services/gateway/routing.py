"""Which model version answers a request: champion only, canary, or shadow.

- champion: the champion answers everything.
- canary: a share of entities (``canary_share``) is answered by the challenger. The
  split hashes the entity id, so one entity always gets the same version (sticky), and
  the share holds across gateway replicas and restarts without any shared state.
- shadow: the champion answers; the challenger scores the same request in the
  background, its answer is logged with ``shadow=true`` and never returned.

Without a challenger every strategy serves the champion alone.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from typing import Literal

Strategy = Literal["champion", "canary", "shadow"]
CHAMPION = "champion"
CHALLENGER = "challenger"
# An OIP request that names a served version gets it: no routing, and no retry elsewhere.
PINNED = "pinned"

_SCALE = float(1 << 64)


def bucket(key: str, salt: str = "") -> float:
    """A stable number in [0, 1) for ``key`` (blake2b, so equal on every process and host)."""
    digest = hashlib.blake2b(f"{salt}\x00{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / _SCALE


@dataclass(frozen=True, slots=True)
class Route:
    """The version that answers (and under which alias), and the shadow version if any."""

    version: int
    alias: str
    shadow_version: int = 0


@dataclass(frozen=True, slots=True)
class Routing:
    """A use case's serving plan at one moment; replaced whole when an alias changes."""

    use_case: str
    champion: int
    challenger: int = 0
    strategy: Strategy = "champion"
    canary_share: float = 0.0

    def route(self, entity_key: str | None) -> Route:
        """Route one request; ``entity_key`` is the entity id (canary stickiness), or None."""
        if self.challenger and self.challenger != self.champion:
            if self.strategy == "shadow":
                return Route(self.champion, CHAMPION, self.challenger)
            if self.strategy == "canary":
                # Salted by use case so two use cases' canaries do not pick the same entities.
                point = bucket(entity_key, self.use_case) if entity_key else random.random()
                if point < self.canary_share:
                    return Route(self.challenger, CHALLENGER)
        return Route(self.champion, CHAMPION)

    @property
    def versions(self) -> frozenset[int]:
        """Versions that must be loaded for this plan."""
        used = {self.champion}
        if self.challenger and self.strategy in ("canary", "shadow"):
            used.add(self.challenger)
        return frozenset(v for v in used if v)
