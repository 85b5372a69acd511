"""``python -m tests.chaos``: runs the chaos suite, prints its table, exits 1 on any loss,
doubling, abandoned request or disruption the factory did not recover from.

``AIF_CHAOS_RECORDS`` (default 20000) and ``AIF_CHAOS_LANES`` (default 3) size the load.
"""

from __future__ import annotations

import os
import sys

from tests.chaos.suite import ChaosConfig, run, table


def main() -> int:
    cfg = ChaosConfig(
        records=int(os.environ.get("AIF_CHAOS_RECORDS", ChaosConfig.records)),
        lanes=int(os.environ.get("AIF_CHAOS_LANES", ChaosConfig.lanes)),
    )
    outcome = run(cfg)
    print()
    print(table(outcome))
    failures = outcome.failures()
    for line in failures:
        print(f"FAIL {line}")
    print("chaos: " + ("FAILED" if failures else "passed: nothing lost, nothing doubled"))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
