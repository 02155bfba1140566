"""Issue 21: slow and vanishing clients against the real server (serve_model.py in its own
process, on a free 127.0.0.1 port, under a memory cap; every socket has a timeout).

150 connections that never finish their request head must not keep a good request out;
a head or body that stops coming is timed out with a JSON answer; past --max-connections
requests in progress the answer is a JSON 503; a client that goes away mid-body is one
log line. The model is an untrained two-class network: no NIH image is needed.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import select
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from pyimagesearch.serving.server_process import stop, wait_until_ready
from tests.conftest import ROOT
from tests.serving import BOUNDARY, MULTIPART, good_request
from tests.test_safety import MEMORY_CAP

SLOW = 150
HEADER_TIMEOUT = 2  # the short-timeout server's --header-timeout
BODY_TIMEOUT = 4  # and --body-timeout: long enough to set up the 503 case within it
SMALL_LIMIT = 3  # and --max-connections


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    from pyimagesearch.core.preprocessing import default_recipe
    from pyimagesearch.training.serialization import save_model
    from pyimagesearch.training.train import build_model

    path = tmp_path_factory.mktemp("model") / "tiny.keras"
    metadata = {
        "class_names": ["Parasitized", "Uninfected"],
        "preprocessing": default_recipe((32, 32)),
    }
    save_model(build_model(2, (32, 32)), path, metadata, compiled=True)
    return path


def cap_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))


@contextlib.contextmanager
def capped_server(model: Path, log: Path, *flags: str) -> Iterator[str]:
    """serve_model.py on --port 0 under MEMORY_CAP; yields its URL once /readyz is 200."""
    command = [sys.executable, "serve_model.py", "--model", str(model), "--port", "0",
               "--runtime", "tensorflow", *flags]  # fmt: skip
    with open(log, "w") as handle:
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=handle,
            stderr=subprocess.STDOUT,
            preexec_fn=cap_memory,
        )
    try:
        yield wait_until_ready(process, log, 180)
    finally:
        stop(process)


def address(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("http://").rstrip("/").split(":")
    return host, int(port)


def connect(url: str, data: bytes = b"", timeout: float = 10) -> socket.socket:
    sock = socket.create_connection(address(url), timeout=timeout)
    if data:
        sock.sendall(data)
    return sock


def read_until_closed(sock: socket.socket, limit: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection, and how long that took
    (a socket.timeout after LIMIT seconds if it never does)."""
    sock.settimeout(limit)
    start, chunks = time.monotonic(), []
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks), time.monotonic() - start


def json_answer(raw: bytes) -> tuple[int, dict[str, str], dict]:
    """Status, headers and JSON body of one raw HTTP/1.1 response."""
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    assert headers.get("content-type") == "application/json", raw[:300]
    return int(lines[0].split()[1]), headers, json.loads(body)


def partial_head(index: int = 0) -> bytes:
    """A request line and half a header line: a slow client's first bytes."""
    return f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow-{index}: ".encode()


def head_with_body(length: int = 5000, sent: int = 200) -> bytes:
    """A complete /predict head declaring LENGTH body bytes, then only SENT of them."""
    head = (
        "POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Type: {MULTIPART}\r\nContent-Length: {length}\r\n\r\n"
    )
    part = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="files"; filename="slow.png"'
        "\r\nContent-Type: image/png\r\n\r\n"
    ).encode()
    return head.encode() + (part + b"\x89PNG" * sent)[:sent]  # a valid start, then it stops


# --- the default server: 150 slow connections ----------------------------------------


def test_a_good_request_is_answered_while_150_slow_connections_are_open(
    model: Path, tmp_path: Path
):
    """Default limits (--max-connections 128, --header-timeout 10): 150 connections that
    stop mid-header; /readyz and a /predict still answer at once, in JSON, and the
    server has closed the connections it needed room for, the idle ones, with a JSON 503."""
    with capped_server(model, tmp_path / "server.log") as url:
        slow = [connect(url, partial_head(i)) for i in range(SLOW)]
        try:
            time.sleep(0.5)  # every slow head is in the server before the good request
            started = time.monotonic()
            with httpx.Client(base_url=url.rstrip("/"), timeout=10) as client:
                ready = client.get("/readyz")
                answer = client.request(**good_request())
            elapsed = time.monotonic() - started
            assert ready.status_code == 200 and ready.json()["ready"] is True, ready.text
            assert answer.status_code == 200, answer.text
            assert answer.json()["predictions"][0]["file"] == "good.png"
            assert elapsed < 5, f"the good requests took {elapsed:.1f} s"
            print(f"\n[measured] /readyz + /predict under {SLOW} slow connections: {elapsed:.3f} s")
            # Readable now: answered and closed by the server (the others are still open).
            readable = select.select(slow, [], [], 0.5)[0]
            closed = [read_until_closed(sock, 2)[0] for sock in readable]
            # 150 slow + 1 good connection against 128: at least 23 made room.
            assert len(closed) >= SLOW + 1 - 128, len(closed)
            status, _, body = json_answer(closed[0])
            assert status == 503 and "connection limit" in body["reason"], body
        finally:
            for sock in slow:
                sock.close()


# --- a server with short timeouts and a small limit ----------------------------------


@pytest.fixture(scope="module")
def strict(model: Path, tmp_path_factory) -> Iterator[tuple[str, Path]]:
    log = tmp_path_factory.mktemp("strict") / "server.log"
    flags = ["--header-timeout", str(HEADER_TIMEOUT), "--body-timeout", str(BODY_TIMEOUT),
             "--max-connections", str(SMALL_LIMIT)]  # fmt: skip
    with capped_server(model, log, *flags) as url:
        yield url, log


def test_a_head_that_stops_gets_a_json_408_after_the_header_timeout(strict):
    url, _ = strict
    with connect(url, partial_head()) as sock:
        raw, waited = read_until_closed(sock, HEADER_TIMEOUT + 8)
    status, headers, body = json_answer(raw)
    assert status == 408 and headers["connection"] == "close", raw
    assert "no complete request head" in body["reason"] and body["file"] is None, body
    assert HEADER_TIMEOUT - 0.5 < waited < HEADER_TIMEOUT + 5, waited


def test_an_idle_connection_is_closed_after_the_header_timeout(strict):
    with connect(strict[0]) as sock:
        raw, waited = read_until_closed(sock, HEADER_TIMEOUT + 8)
    assert raw == b"" and waited < HEADER_TIMEOUT + 5, (raw, waited)


def test_a_body_that_stops_gets_a_json_408_after_the_body_timeout(strict):
    url, log = strict
    with connect(url, head_with_body()) as sock:
        raw, waited = read_until_closed(sock, BODY_TIMEOUT + 8)
    status, headers, body = json_answer(raw)
    assert status == 408 and headers["connection"] == "close", raw
    assert "no part of the request body" in body["reason"], body
    assert BODY_TIMEOUT - 0.5 < waited < BODY_TIMEOUT + 5, waited
    assert "answered 1 request(s) 408" in log.read_text()  # the first of a flood is logged


def test_past_max_connections_requests_in_progress_a_request_gets_a_json_503(strict):
    """--max-connections 3 requests in progress (bodies still coming): the fourth
    connection is accepted (none is idle to make room) and answered 503 in JSON."""
    url, _ = strict
    busy = [connect(url, head_with_body()) for _ in range(SMALL_LIMIT)]
    try:
        time.sleep(0.5)
        response = httpx.get(url + "healthz", timeout=BODY_TIMEOUT)
        assert response.status_code == 503, response.text
        assert response.headers["retry-after"] == "1"
        body = response.json()
        assert set(body) == {"error", "file", "reason"}, body
        assert "busy" in body["reason"], body
    finally:
        for sock in busy:
            sock.close()
    time.sleep(0.5)
    assert httpx.get(url + "healthz", timeout=10).status_code == 200


def test_a_connection_closed_for_room_gets_a_json_503_even_before_its_first_byte(strict):
    """--max-connections 3 idle connections that have sent nothing: a fourth client makes
    room and is answered; the oldest idle one gets the JSON 503 before it is closed (a
    slow client's bytes may still be unread when room is made, so none is closed without
    a word). Mutation: answering only connections whose head had started fails this."""
    url, _ = strict
    idle = [connect(url) for _ in range(SMALL_LIMIT)]
    try:
        time.sleep(0.3)  # all three are open in the server, oldest first
        assert httpx.get(url + "healthz", timeout=10).status_code == 200
        raw, _ = read_until_closed(idle[0], HEADER_TIMEOUT + 5)
        status, headers, body = json_answer(raw)
        assert status == 503 and headers["connection"] == "close", raw
        assert "connection limit" in body["reason"], body
    finally:
        for sock in idle:
            sock.close()


def test_a_malformed_request_gets_a_json_400(strict):
    with connect(strict[0], b"NOT HTTP AT ALL\r\n\r\n") as sock:
        raw, _ = read_until_closed(sock, 10)
    status, _, body = json_answer(raw)
    assert status == 400 and "invalid HTTP request" in body["reason"], body


def test_a_client_gone_mid_body_is_one_log_line(strict):
    """Content-Length: 5000, 200 bytes sent, then the connection closed: one warning line
    naming the client and the byte counts, no ClientDisconnect traceback."""
    url, log = strict
    sock = connect(url, head_with_body(5000, 200))
    port = sock.getsockname()[1]
    time.sleep(0.5)  # the server is reading the body
    sock.close()
    deadline = time.monotonic() + 10
    lines: list[str] = []
    while time.monotonic() < deadline and not lines:
        time.sleep(0.2)
        lines = [line for line in log.read_text().splitlines() if f":{port} " in line]
    time.sleep(0.5)  # anything the server writes after the line comes with it
    text = log.read_text()
    assert "Traceback" not in text and "ClientDisconnect" not in text, text[-3000:]
    lines = [line for line in text.splitlines() if f":{port} " in line]
    assert len(lines) == 1, text[-3000:]
    assert lines[0].startswith("[WARNING] 127.0.0.1:") and "200 of 5,000 bytes" in lines[0]


@pytest.mark.parametrize(
    "flag, value", [("--header-timeout", "0"), ("--body-timeout", "nan"), ("--body-timeout", "1e9")]
)
def test_a_timeout_out_of_range_is_one_line(flag: str, value: str):
    import serve_model
    from pyimagesearch.core.errors import UserError

    with pytest.raises(UserError, match=f"{flag} must be above 0 and at most 3600"):
        serve_model.parse_args(["--model", "m.keras", flag, value])
    defaults = serve_model.parse_args(["--model", "m.keras"])
    assert (defaults.header_timeout, defaults.body_timeout, defaults.max_connections) == (
        10,
        30,
        128,
    )
