"""python -m bench.serve --model M --images DIR [--clients 16] [--requests 400]

Load test of serve_model.py on this machine. The server starts in its own process on
a free 127.0.0.1 port; --clients threads, one keep-alive connection each, send
one-image requests until --requests have been sent in all (or --time-limit passes).
Then load_model.py classifies the images the requests drew from in bulk (its own process,
--samples 0, the runtime the server used) for comparison. Prints requests/s, images/s, latency
percentiles and errors; with --output, writes them as markdown with the machine.

Everything stays on 127.0.0.1, and the number of requests and the time are bounded.
"""

from __future__ import annotations

import argparse
import http.client
import re
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from pyimagesearch import options
from pyimagesearch.serving.server_process import get_json, running_server

BOUNDARY = "bench-serve-boundary"


def multipart_one(name: str, data: bytes) -> bytes:
    """A multipart/form-data body holding one file in the field 'files'."""
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="files"; filename="{name}"\r\n'
        "Content-Type: image/png\r\n\r\n"
    )
    return head.encode() + data + f"\r\n--{BOUNDARY}--\r\n".encode()


@dataclass
class Load:
    """What the clients saw."""

    wall_s: float = 0.0
    latencies_s: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies_s)
        return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))] if ordered else 0.0


def drive(url: str, bodies: list[bytes], clients: int, requests: int, time_limit: float) -> Load:
    """Send REQUESTS one-image requests from CLIENTS threads; each keeps one connection."""
    match = re.match(r"http://([^:/]+):(\d+)/", url)
    assert match, url
    host, port = match.group(1), int(match.group(2))
    headers = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
    load, lock, sent = Load(), threading.Lock(), [0]
    stop_at = time.monotonic() + time_limit

    def client() -> None:
        connection = http.client.HTTPConnection(host, port, timeout=60)
        while True:
            with lock:
                number, sent[0] = sent[0], sent[0] + 1
            if number >= requests or time.monotonic() > stop_at:
                break
            start = time.perf_counter()
            try:
                connection.request("POST", "/predict", bodies[number % len(bodies)], headers)
                response = connection.getresponse()
                payload = response.read()
                if response.status != 200:
                    load.errors.append(f"{response.status}: {payload[:200]!r}")
            except (OSError, http.client.HTTPException) as error:
                load.errors.append(f"{type(error).__name__}: {error}")
                connection.close()
                connection = http.client.HTTPConnection(host, port, timeout=60)
            load.latencies_s.append(time.perf_counter() - start)
        connection.close()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(time_limit + 120)
    load.wall_s = time.perf_counter() - start
    return load


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = options.command_parser(__doc__, "bench.serve")
    parser.add_argument("--model", required=True, help="model file written by save_model.py")
    parser.add_argument("--images", required=True, help="folder of images (searched recursively)")
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients (default: 16)")
    parser.add_argument("--requests", type=int, default=400, help="requests in all (default: 400)")
    parser.add_argument(
        "--limit",
        type=int,
        default=2000,
        help="images drawn from --images: the requests cycle through them, and the bulk run "
        "classifies them all, enough for its start-up not to weigh (default: 2000)",
    )
    parser.add_argument(
        "--runtime",
        choices=("auto", "openvino", "tensorflow"),
        default="auto",
        help="the server's --runtime; the bulk run uses the one it resolved to",
    )
    parser.add_argument(
        "--time-limit", type=float, default=300, help="stop sending after this many seconds"
    )
    parser.add_argument("--output", help="also write the results as markdown here")
    args = parser.parse_args(argv)
    if min(args.clients, args.requests, args.limit) <= 0:
        parser.error("--clients, --requests and --limit must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from bench.measure import describe_machine, link_images, list_images, run_child

    command = "python -m bench.serve " + " ".join(sys.argv[1:] if argv is None else argv)
    machine = describe_machine()
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as folder:
        work = Path(folder)
        count = link_images(Path(args.images), work / "images", args.limit, seed=1)
        paths = list_images(work / "images")
        bodies = [multipart_one(path.name, path.read_bytes()) for path in paths]
        print(f"[INFO] {count} images; starting the server...", flush=True)
        with running_server(args.model, work / "server.log", "--runtime", args.runtime) as url:
            runtime = get_json(url + "readyz")[1]["runtime"]
            print(f"[INFO] server ready at {url} ({runtime}); warming up...", flush=True)
            drive(url, bodies, args.clients, 2 * args.clients, 60)
            before = get_json(url + "readyz")[1]
            print(f"[INFO] {args.clients} clients, {args.requests} requests...", flush=True)
            load = drive(url, bodies, args.clients, args.requests, args.time_limit)
            after = get_json(url + "readyz")[1]
        batches = after["batches"] - before["batches"]
        batched = after["images"] - before["images"]
        print("[INFO] load_model.py on the same images, in bulk...", flush=True)
        bulk = run_child(
            "bulk",
            ["-m", "bench.instrument", "load_model.py", "--images", str(work / "images"),
             "--model", str(args.model), "--samples", "0", "--runtime", args.runtime,
             "--csv", str(work / "bulk.csv"), "--output", str(work / "bulk.png")],
            work,
        )  # fmt: skip
    done = len(load.latencies_s)
    bulk_rate = bulk.report["images"] / bulk.report["classify_s"]
    served_rate = (done - len(load.errors)) / load.wall_s
    p99_ms = load.percentile(99) * 1000
    met = served_rate >= 0.5 * bulk_rate and p99_ms < 250 and not load.errors
    rows = [
        ("clients (one image per request, keep-alive)", f"{args.clients}"),
        ("requests sent", f"{done}"),
        ("errors", f"{len(load.errors)}"),
        ("wall time, s", f"{load.wall_s:.1f}"),
        ("requests/s", f"{done / load.wall_s:.1f}"),
        ("images/s (server)", f"{served_rate:.1f}"),
        ("latency p50 / p95 / p99, ms",
         " / ".join(f"{load.percentile(q) * 1000:.0f}" for q in (50, 95, 99))),
        ("batches run / mean images per batch",
         f"{batches} / {batched / batches:.1f}" if batches else "0"),
        (f"load_model.py bulk images/s ({count} images the requests drew from, {runtime})",
         f"{bulk_rate:.1f}"),
        ("server images/s / bulk images/s", f"{served_rate / bulk_rate:.2f}"),
        ("target: >= 0.50 of bulk, p99 < 250 ms, 0 errors", "met" if met else "NOT met"),
    ]  # fmt: skip
    table = "\n".join(
        ["| measure | value |", "|---|---:|", *[f"| {name} | {value} |" for name, value in rows]]
    )
    print(table)
    for error in load.errors[:10]:
        print(f"[WARNING] {error}", file=sys.stderr)
    if args.output:
        Path(args.output).write_text(
            f"# Serving under load\n\nMachine: {machine}.\n\nCommand: `{command}` (server "
            f"runtime {runtime}; the clients run on the same machine as the server).\n\n"
            f"{table}\n"
        )
        print(f"[INFO] written to '{args.output}'")
    return 0


if __name__ == "__main__":
    sys.exit(main())
