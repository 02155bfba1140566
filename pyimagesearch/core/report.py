"""The one channel for what the commands tell their user: ``[INFO]`` lines to stdout,
``[WARNING]`` and ``[ERROR]`` lines to stderr, in the tutorial's own style.

They go through the standard ``logging`` logger ``"pyimagesearch"``, so a Python caller
silences them with ``logging.getLogger("pyimagesearch").setLevel(logging.ERROR)`` (or
:func:`quiet`) and redirects them with its own handler. TensorFlow-free.
"""

from __future__ import annotations

import logging
import sys

LOGGER = logging.getLogger("pyimagesearch")


class _TutorialFormatter(logging.Formatter):
    """``[LEVEL] message``; a ``plain`` line (a report table, a summary) as it is."""

    def format(self, record: logging.LogRecord) -> str:
        if getattr(record, "plain", False):
            return record.getMessage()
        return f"[{record.levelname}] {record.getMessage()}"


CLEAR_LINE = "\r\x1b[K"  # back to the line's start, and erase it (ANSI "erase in line")


def _is_terminal(stream) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


class _TutorialHandler(logging.Handler):
    """Writes ``[LEVEL] message`` to the *current* sys.stdout or sys.stderr.

    logging.StreamHandler keeps the stream it was given at import; pytest's capsys and
    a caller's contextlib.redirect_stdout replace sys.stdout later, so the stream is
    looked up at each line instead."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            stream = sys.stdout if record.levelno < logging.WARNING else sys.stderr
            if record.levelno >= logging.WARNING:
                sys.stdout.flush()  # a warning never lands in the middle of an info line
                if _is_terminal(sys.stdout) and _is_terminal(stream):
                    # Keras' progress bar on a terminal leaves its line open between
                    # steps; return to its start and clear it, as tqdm.write does, so the
                    # line starts with [WARNING]: the bar redraws itself (with a "\r")
                    # on the line below at its next step. Redirected logs are unchanged.
                    sys.stdout.write(CLEAR_LINE)
                    sys.stdout.flush()
            stream.write(self.format(record) + "\n")
            stream.flush()
        except Exception:  # logging's own rule: a failing handler never stops the caller
            self.handleError(record)


if not any(isinstance(handler, _TutorialHandler) for handler in LOGGER.handlers):
    _handler = _TutorialHandler()
    _handler.setFormatter(_TutorialFormatter())
    LOGGER.addHandler(_handler)
    LOGGER.setLevel(logging.INFO)
    LOGGER.propagate = False


def info(message: str) -> None:
    """An ``[INFO]`` line: progress, on stdout."""
    LOGGER.info(message)


def plain(message: str) -> None:
    """Lines without a prefix on stdout (a classification report, a summary table),
    silenced with the ``[INFO]`` lines."""
    LOGGER.info(message, extra={"plain": True})


def warning(message: str) -> None:
    """A ``[WARNING]`` line on stderr, starting on a line of its own (on a terminal, also
    where a Keras progress bar is mid-line)."""
    LOGGER.warning(message)


def error(message: str) -> None:
    """An ``[ERROR]`` line on stderr, starting on a line of its own like a warning."""
    LOGGER.error(message)


def keras_verbosity(verbose: int = 1) -> int:
    """Keras' progress bar (verbose 1) redraws its line with escape sequences, which a
    redirected log (save_model.py ... > train.log) shows as garbage: there, one plain
    line per epoch (verbose 2)."""
    return 2 if verbose == 1 and not sys.stdout.isatty() else verbose


def quiet(level: int = logging.ERROR) -> None:
    """Hide lines below LEVEL, for Python callers that want the library silent."""
    LOGGER.setLevel(level)
