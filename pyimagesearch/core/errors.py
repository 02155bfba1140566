"""Bad input is reported in one line with exit status 2; real bugs keep their traceback."""

from __future__ import annotations

import contextlib
import gc
import os
import sys
from collections.abc import Callable, Iterator

from pyimagesearch.core import report


class UserError(Exception):
    """Bad input from the user: report it in one line and exit with status 2."""


def run_command(main: Callable[[list[str] | None], int | None], argv=None) -> int:
    """Run a command-line ``main``, turning UserError into one stderr line and exit 2.

    Unless --debug, TensorFlow's C++ info and warning lines are off (see
    :func:`start_tensorflow` for the start-up lines this setting no longer reaches)."""
    exiting = argv is None  # the process' own command line: it exits when main returns
    argv = sys.argv[1:] if argv is None else argv
    if "--debug" not in argv:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        return main(argv) or 0
    except UserError as error:
        if "--debug" in argv:
            raise
        report.error(f"{error}")
        return 2
    finally:
        if exiting:
            # Python's last garbage collection at exit walks every object TensorFlow and
            # Keras made: 1.5 s of a training run on a 2-core AMD EPYC, 0.3 s with them
            # frozen out of it. Files are closed and atexit handlers still run.
            gc.freeze()


@contextlib.contextmanager
def c_stderr_muted() -> Iterator[None]:
    """Point the process's stderr file descriptor at /dev/null; Python's errors raised
    inside still print, since it is restored before any traceback is written."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def start_tensorflow(debug: bool = False) -> None:
    """Import TensorFlow and let it find its devices, with its C++ start-up log muted
    unless DEBUG.

    On a CPU-only machine that log prints lines such as an ERROR-level "failed call to
    cuInit" between ours, none of which a user can act on. TensorFlow 2.21 writes them
    through absl before absl's logging is set up, where TF_CPP_MIN_LOG_LEVEL does not
    reach, so the only way to keep them out is the file descriptor itself.
    """
    with contextlib.nullcontext() if debug else c_stderr_muted():
        import tensorflow as tf

        tf.config.list_physical_devices()  # CUDA's probe (cuInit) happens here
