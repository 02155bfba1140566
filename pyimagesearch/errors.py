"""Bad input is reported in one line with exit status 2; real bugs keep their traceback."""

from __future__ import annotations

import sys
from collections.abc import Callable


class UserError(Exception):
    """Bad input from the user: report it in one line and exit with status 2."""


def run_command(main: Callable[[list[str] | None], int | None], argv=None) -> int:
    """Run a command-line ``main``, turning UserError into one stderr line and exit 2."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        return main(argv) or 0
    except UserError as error:
        if "--debug" in argv:
            raise
        print(f"[ERROR] {error}", file=sys.stderr)
        return 2
