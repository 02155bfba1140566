"""serve_model.py in a child process: start it, wait until it is ready, stop it.

The product's load benchmarks (``bench.serve``, ``bench.inference``) and the tests that
talk to a live server share this, so that both start the server exactly as a user does
(``python serve_model.py --port 0``) and read its address from its ``serving on`` line.
It runs the ``serve_model.py`` of this source tree, so it is for a checkout, not an
installed package.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 180


def get_json(url: str, timeout: float = 5) -> tuple[int, dict]:
    """(status, JSON body) of a GET; a refused or reset connection raises OSError."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


@contextlib.contextmanager
def running_server(
    model: str | Path, log: Path, *flags: str, timeout: float = START_TIMEOUT_S
) -> Iterator[str]:
    """Start serve_model.py on a port the system picks (--port 0) on 127.0.0.1; yield its
    base URL once /readyz answers 200; stop it (SIGTERM, then SIGKILL) afterwards."""
    command = [sys.executable, "serve_model.py", "--model", str(model), "--port", "0", *flags]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with open(log, "w") as handle:
        process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT
        )
    try:
        yield wait_until_ready(process, log, timeout)
    finally:
        stop(process)


def stop(process: subprocess.Popen) -> None:
    """SIGTERM (the server's graceful stop), then SIGKILL if it is not gone in 15 s."""
    process.terminate()
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(15)


def wait_until_ready(process: subprocess.Popen, log: Path, timeout: float) -> str:
    """The server's base URL once its log names it and /readyz answers 200; an error with
    the log if it exits or is not ready within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    url = None
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited ({process.returncode}):\n{log.read_text()}")
        if url is None:
            found = re.search(r"serving on (http://127\.0\.0\.1:\d+/)", log.read_text())
            url = found.group(1) if found else None
        if url is not None:
            with contextlib.suppress(OSError, ValueError):
                if get_json(url + "readyz")[0] == 200:
                    return url
        time.sleep(0.2)
    raise RuntimeError(f"the server was not ready within {timeout:.0f} s:\n{log.read_text()}")
