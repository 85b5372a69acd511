"""``loop.seconds.multihost``: the closed loop with every part on a host of its own.

The same layout as ``make test-multihost`` (aif.multihost: twelve network namespaces, a
Unix user and a private folder each): drift onset → new champion serving, beside the
one-host ``loop.seconds`` of the same bench run (the ``loop`` part runs first), or, when
that part did not run, beside this layout's own first model train → serving time.

Needs root (namespaces, users, mounts); without it, or in ``--smoke`` (CI's
``make test`` already runs the layout), the row says why it has no value.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from tests.bench.report import Figure

NAME = "loop.seconds.multihost"
# Set by ``--smoke``: the layout takes minutes and `make test` runs it already.
SKIP = ""


def measure_multihost(so_far: Sequence[Figure]) -> list[Figure]:
    if SKIP or os.geteuid() != 0:
        why = SKIP or "needs root (network namespaces, users, mounts)"
        return [Figure(NAME, None, "s", "loop.seconds", None, note=f"not run: {why}")]
    from aif.multihost import run

    outcome = run(say=lambda line: print(line, flush=True))
    loop = outcome.loop
    closed = bool(loop.get("closed"))
    one_host = next((f for f in so_far if f.name == "loop.seconds" and f.value is not None), None)
    baseline = (
        ("loop.seconds", one_host.value)
        if one_host
        else (
            "first_model.train_to_serving_s",
            loop.get("first_model_s"),
        )
    )
    return [
        Figure(
            NAME,
            loop.get("serving_after_s") if closed else None,
            "s",
            baseline[0],
            baseline[1],
            note="" if closed else f"the loop did not close: {outcome.failure or loop.get('summary', '')}",
            failed=not closed,
        )
    ]
