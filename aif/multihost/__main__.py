"""``python -m aif.multihost [run|cleanup]`` (root): see the package docstring."""

from __future__ import annotations

import sys

from aif.multihost.layout import cleanup_everything, render_hosts, run


def main(argv: list[str]) -> int:
    if argv[:1] == ["cleanup"]:
        removed = cleanup_everything()
        print("\n".join(removed) if removed else "nothing to remove")
        return 0
    if argv not in ([], ["run"]):
        print("usage: python -m aif.multihost [run|cleanup]", file=sys.stderr)
        return 2
    outcome = run(say=lambda line: print(line, flush=True))
    print()
    print(render_hosts(outcome.hosts))
    print(f"\nseconds: {', '.join(f'{k} {v:.1f}' for k, v in outcome.seconds.items())}")
    if outcome.failure:
        print(f"FAILED: {outcome.failure}")
    if outcome.loop.get("summary"):
        print(outcome.loop["summary"])
    return 0 if outcome.ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
