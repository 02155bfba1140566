"""Serve an image classifier saved by save_model.py over HTTP: a web page, a JSON API,
health checks. Any classes: the malaria model or one trained on your own image folders.

    python serve_model.py --model saved_model.model [--host 127.0.0.1] [--port 8000]
        [--title TEXT]

Then open http://127.0.0.1:8000/ or
    curl -F files=@image.png http://127.0.0.1:8000/predict

Endpoints: POST /predict (multipart field 'files', one or more images), GET /model (the
class names, their colours, the recipe and provenance), GET /healthz, GET /readyz, GET /
(the page, titled from the model's classes unless --title says otherwise). Requests
arriving together are classified in one batch (--max-batch images, waiting at most
--max-wait-ms for more). A connection has --header-timeout seconds to send its request
head and each part of a body --body-timeout; past --max-connections, connections waiting
for a request make room, and requests beyond it get a 503. There is no authentication:
it listens on 127.0.0.1 unless --host says otherwise.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import signal
import socket
import sys
import threading

from pyimagesearch import options
from pyimagesearch.core import report
from pyimagesearch.core.errors import UserError, run_command

MAX_TITLE_LENGTH = 120
MAX_TIMEOUT_S = 3600
# --workers beyond this many per CPU only add memory (each holds a network) and contend.
MAX_WORKERS_PER_CPU = 4


def port_number(text: str) -> int:
    """argparse type: a TCP port (0 lets the system choose)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be between 0 and 65535, got {text}")
    return value


def page_title_text(text: str) -> str:
    """argparse type: the page's title, one line of readable text."""
    title = " ".join(text.split())
    if not title:
        raise argparse.ArgumentTypeError("must not be empty")
    if len(title) > MAX_TITLE_LENGTH:
        raise argparse.ArgumentTypeError(
            f"must be at most {MAX_TITLE_LENGTH} characters, got {len(title)}"
        )
    if any(not character.isprintable() for character in title):
        raise argparse.ArgumentTypeError("must not hold control characters")
    return title


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = options.command_parser(__doc__)
    parser.add_argument(
        "-m",
        "--model",
        required=True,
        help="image classifier written by save_model.py (or by Keras elsewhere, with --classes)",
    )
    parser.add_argument(
        "--title",
        type=page_title_text,
        metavar="TEXT",
        help="the web page's title and heading (default: from the model's class names, "
        "e.g. 'Image classifier: cat / dog'; 'Malaria cell classifier' for the tutorial's "
        "Parasitized / Uninfected model)",
    )
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default: 127.0.0.1, this machine only)",
    )
    parser.add_argument("--port", type=port_number, default=8000, help="TCP port (default: 8000)")
    options.add_runtime(
        parser,
        "a file without one is served by TensorFlow, which served faster than OpenVINO "
        "converted at load time (bench/SERVE.md)",
    )
    options.add_precision(parser, "inference")
    options.add_expect_sha256(parser)
    parser.add_argument(
        "--workers",
        type=options.positive_count,
        default=1,
        help="server processes, each holding one compiled network (default: 1; at most 4 "
        "per CPU; memory per worker: docs/serve.md)",
    )
    parser.add_argument(
        "--max-batch",
        type=options.positive_count,
        default=64,
        help="most images the network classifies at once (default: 64)",
    )
    parser.add_argument(
        "--max-wait-ms",
        type=float,
        default=5.0,
        help="how long a batch waits for more requests before it runs (default: 5)",
    )
    parser.add_argument(
        "--max-images",
        type=options.positive_count,
        default=64,
        help="most images in one request (default: 64)",
    )
    parser.add_argument(
        "--max-request-mb",
        type=float,
        default=32.0,
        help="largest request body in MiB (default: 32)",
    )
    options.add_max_pixels(parser, "refuse")
    parser.add_argument(
        "--max-connections",
        type=options.positive_count,
        default=128,
        help="open connections and requests in progress (default: 128). At the limit a new "
        "connection closes one that is waiting for its request (idle or slow, from the "
        "client holding most); past it in requests, a JSON 503",
    )
    parser.add_argument(
        "--header-timeout",
        type=float,
        default=10.0,
        metavar="S",
        help="seconds a connection has to send a complete request head, from when it opens "
        "or was last answered (default: 10)",
    )
    parser.add_argument(
        "--body-timeout",
        type=float,
        default=30.0,
        metavar="S",
        help="the longest wait in seconds for the next part of a request body; then a 408 "
        "(default: 30)",
    )
    options.add_adoption(parser)
    options.add_debug(parser)
    args = parser.parse_args(argv)
    options.adoption(args)  # --interpolation or --scale without --classes: refused here
    if not 0 <= args.max_wait_ms <= 1000:
        raise UserError(f"--max-wait-ms must be between 0 and 1000, got {args.max_wait_ms}")
    if not 0 < args.max_request_mb <= 4096:
        raise UserError(
            f"--max-request-mb must be above 0 and at most 4096, got {args.max_request_mb}"
        )
    for flag, value in (("--header-timeout", args.header_timeout),
                        ("--body-timeout", args.body_timeout)):  # fmt: skip
        if not 0 < value <= MAX_TIMEOUT_S:
            raise UserError(f"{flag} must be above 0 and at most {MAX_TIMEOUT_S}, got {value}")
    return args


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def listen(host: str, port: int) -> socket.socket:
    """The listening socket, bound here so a taken port is one clear line (exit 2)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family)
    except OSError as error:
        raise UserError(f"cannot listen on {host}:{port}: {error.strerror or error}") from error


def settings_from(args: argparse.Namespace):
    """The options as the service takes them (``serve.Settings``, also what each worker
    process of --workers reads back)."""
    from pyimagesearch.serving.connections import ConnectionRules
    from pyimagesearch.serving.serve import Limits, Settings

    limits = Limits(
        max_request_bytes=int(args.max_request_mb * (1 << 20)),
        max_images=args.max_images,
        max_pixels=args.max_pixels,
        max_requests=args.max_connections,
        body_timeout_s=args.body_timeout,
    )
    return Settings(args.model, args.runtime, args.precision, args.max_batch,
                    args.max_wait_ms, limits, args.title, args.debug,
                    ConnectionRules(args.max_connections, args.header_timeout),
                    args.expect_sha256, args.classes, args.interpolation,
                    args.scale)  # fmt: skip


def run_server(service, settings, sock: socket.socket, args: argparse.Namespace) -> None:
    """uvicorn on SOCK: this process with --workers 1, else that many fresh processes."""
    import uvicorn

    from pyimagesearch.serving.connections import GuardedH11Protocol
    from pyimagesearch.serving.serve import SETTINGS_VARIABLE, create_app

    # Connection rules uvicorn has no setting for (pyimagesearch/serving/connections.py): a header
    # timeout, and room made at --max-connections by closing connections that wait for a
    # request. Its limit_concurrency stays off (a plain-text 503, idle connections
    # counted): serve.RequestGuard bounds requests in progress and answers in JSON.
    server_options = dict(
        http=GuardedH11Protocol,
        ws="none",  # no WebSocket routes: an Upgrade request stays a plain HTTP request
        timeout_keep_alive=5,  # uvicorn's default: an idle kept-alive connection closes
        log_level="debug" if args.debug else "warning",
        access_log=args.debug,
    )
    if args.workers == 1:
        GuardedH11Protocol.rules = settings.connections
        app = create_app(service)
        uvicorn.Server(uvicorn.Config(app, **server_options)).run(sockets=[sock])
        return
    # Each worker is a fresh process (uvicorn spawns them) holding its own compiled
    # network; they share the listening socket, and the kernel spreads connections.
    # Every limit above holds per worker.
    os.environ[SETTINGS_VARIABLE] = settings.to_json()
    from uvicorn.supervisors import Multiprocess

    report.info(f"starting {args.workers} worker processes")
    config = uvicorn.Config(
        "pyimagesearch.serving.serve:app_from_environment",
        factory=True,
        workers=args.workers,
        **server_options,
    )
    supervisor(Multiprocess)(config, sockets=[sock]).run()


def supervisor(multiprocess: type) -> type:
    """uvicorn's Multiprocess, stopped at once by SIGTERM or SIGINT.

    uvicorn only queues a signal and reads the queue between its rounds, so a SIGTERM
    that came while it started workers (or while it checked them, one health check at a
    time) left it starting more, and restarting those the signal had ended. Here the
    signal sets a flag that stops both, and the usual round then ends every worker."""

    class Supervisor(multiprocess):
        stopping = False

        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            for number in (signal.SIGINT, signal.SIGTERM):
                signal.signal(number, self.stop)
            self.should_exit = _Stopping(self)

        def stop(self, number: int, frame: object) -> None:
            self.stopping = True  # a plain assignment: safe in a signal handler
            self.signal_queue.append(number)

        def init_processes(self) -> None:
            from uvicorn.supervisors.multiprocess import Process

            for _ in range(self.processes_num):
                if self.stopping:
                    break
                process = Process(self.config, self.sockets)
                process.start()
                self.processes.append(process)

    return Supervisor


class _Stopping(threading.Event):
    """An Event that also reads as set once the supervisor has a stop signal, so that no
    worker is started or restarted after it."""

    def __init__(self, owner: object) -> None:
        super().__init__()
        self.owner = owner

    def is_set(self) -> bool:
        return self.owner.stopping or super().is_set()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    most = MAX_WORKERS_PER_CPU * (os.cpu_count() or 1)
    if args.workers > most:
        raise UserError(
            f"--workers {args.workers} is more than {MAX_WORKERS_PER_CPU} per CPU ({most} "
            f"on this machine's {os.cpu_count() or 1}); each worker holds its own network"
        )
    from pyimagesearch.serving.serve import build_service

    sock = listen(args.host, args.port)  # before the model: a taken port fails at once
    port = sock.getsockname()[1]  # the one the system chose for --port 0
    settings = settings_from(args)
    report.info("loading pre-trained network...")
    service = build_service(settings)  # in this process too: a bad model fails here, once
    classes = service.class_names
    shown = ", ".join(classes[:10]) + (", ..." if len(classes) > 10 else "")
    report.info(f"{len(classes)} classes: {shown}; running on {service.runtime}")
    if warning := service.not_learnt():
        report.warning(warning)
    if not is_loopback(args.host):
        report.warning(
            f"listening on {args.host}: anyone who can reach this machine can use "
            "the model (there is no authentication)"
        )
    report.info(f"page title: {service.title}")
    report.info(f"serving on http://{args.host}:{port}/ (Ctrl+C stops)")
    if args.workers > 1:
        service = None  # each worker loads its own; this process only supervises
    run_server(service, settings, sock, args)
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main))
