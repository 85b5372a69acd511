"""``aif`` (``python -m aif.cli``, ``.venv/bin/aif``): see ``aif --help`` and docs/cli.md."""

from __future__ import annotations

import sys

import typer
from typer._click.exceptions import ClickException

from aif.cli.app import app


def main(argv: list[str] | None = None) -> int:
    """Runs ``aif`` with ``argv`` (default: the process's); returns the exit code."""
    command = typer.main.get_command(app)
    try:
        result = command.main(args=argv, prog_name="aif", standalone_mode=False)
    except ClickException as exc:  # a usage error: click says which argument and why
        exc.show()
        return exc.exit_code
    except typer.Abort:
        sys.stderr.write("aif: aborted\n")
        return 1
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
