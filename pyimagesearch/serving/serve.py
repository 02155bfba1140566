"""HTTP service: the saved model behind FastAPI, with concurrent requests batched together.

    python serve_model.py --model saved_model.model [--host 127.0.0.1] [--port 8000]

The model is loaded once, as load_model.py loads it (``predict.load_engine``: the
network compiled into the file, run by OpenVINO without TensorFlow, or else Keras in safe
mode; metadata checked either way). Uploads are decoded from bytes by
``pyimagesearch.core.preprocessing`` with the recipe stored in the model, and the engine's
predictor applies the model's stored temperature, if any, so a file gets the
probabilities ``load_model.py`` gives it.

Why micro-batching: on a CPU one batch of 16 images costs far less than 16 batches of
one, so requests that arrive while the network is busy (or within ``max_wait_ms`` of the
first) are classified together by one worker, and each request gets its own rows back.

Bad input (too big, too many files, not an image, truncated, empty, wrong field) gets a
4xx with a JSON body ``{"error", "file", "reason"}``; the server keeps serving. In a
request of several files, a file that cannot be read gets its own entry in
``predictions`` (``{"file", "error", "reason", "status"}``, no label) and the others are
answered with a 200; only a request with no readable file is refused. Clients
send images only: no paths, no models.

Any classes: the page's title comes from the model (``page_title``: the malaria model
keeps "Malaria cell classifier", any other is named by its classes, or ``--title``), each
class has its colour from ``pyimagesearch.core.palette``, and ``GET /model`` returns the
metadata as ``serialization.public_metadata`` makes it, with no absolute path from the
training machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import html
import logging
import math
import os
import re
from collections import deque
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.datastructures import Headers, UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from pyimagesearch.core import report, safety
from pyimagesearch.core.palette import LABEL_BOX, class_colours
from pyimagesearch.serving.connections import ConnectionRules, Tally

# A malformed multipart body is answered with a 400 naming it; the parser's own warning
# ("Expected boundary character 45, got 65 at index 2") would be a stray line in the log.
logging.getLogger("python_multipart").setLevel(logging.ERROR)

FIELD = "files"
FORMATS = "PNG, JPEG, BMP or GIF"
WEB = Path(__file__).resolve().parent / "web"
# The page loads only its own script, style and the images a person picks (blob: URLs).
PAGE_POLICY = "default-src 'self'; img-src 'self' blob: data:; object-src 'none'"
# The tutorial's model keeps the tutorial's words; any other model is named by its classes.
MALARIA_TITLE = "Malaria cell classifier"
MAX_TITLE_CLASSES = 4  # more classes than this (or long names): "(N classes)"


def is_malaria(class_names: list[str]) -> bool:
    from pyimagesearch.core.splitting import is_nih

    return is_nih(class_names)


def page_title(class_names: list[str], title: str | None = None) -> str:
    """The page's title and heading: TITLE (``--title``) when given; "Malaria cell
    classifier" for the tutorial's classes; else "Image classifier: cat / dog", or
    "Image classifier (10 classes)" when the names would not fit in a heading."""
    if title is not None:
        return title
    if is_malaria(class_names):
        return MALARIA_TITLE
    names = " / ".join(class_names)
    if len(class_names) <= MAX_TITLE_CLASSES and len(names) <= 60:
        return f"Image classifier: {names}"
    return f"Image classifier ({len(class_names)} classes)"


def page_words(class_names: list[str], title: str) -> dict[str, str]:
    """What the page template says for this model: "cell" only for the malaria model."""
    malaria = is_malaria(class_names)
    return {
        "title": title,
        "items": "cell images" if malaria else "images",
        "note": "A research demo of a trained network, not a diagnosis."
        if malaria
        else "A demo of a trained network: its answers can be wrong.",
    }


def render_page(template: str, words: dict[str, str]) -> str:
    """TEMPLATE with each ``{{key}}`` replaced by WORDS[key], HTML-escaped (a title is
    user text), in one pass: a value holding ``{{...}}`` is not expanded again."""
    return re.sub(r"\{\{(\w+)\}\}", lambda m: html.escape(words[m.group(1)], quote=True), template)


def is_absolute_path(text: str) -> bool:
    return PurePosixPath(text).is_absolute() or PureWindowsPath(text).is_absolute()


def without_paths(value: Any) -> Any:
    """VALUE with every string that is an absolute path (POSIX or Windows) cut to its last
    name: a safety net under ``public_metadata`` for fields it does not know."""
    if isinstance(value, str) and is_absolute_path(value):
        windows = PureWindowsPath(value)
        return windows.name if windows.is_absolute() else PurePosixPath(value).name
    if isinstance(value, dict):
        return {key: without_paths(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [without_paths(item) for item in value]
    return value


@dataclass(frozen=True)
class Limits:
    """What one request may hold; each bound has a CLI option in serve_model.py."""

    max_request_bytes: int = 32 << 20
    max_images: int = 64
    max_pixels: int = safety.MAX_PIXELS
    max_requests: int = 128  # in progress at once (serve_model.py's --max-connections)
    body_timeout_s: float = 30.0  # the longest wait for the next part of a request body


class ClientError(Exception):
    """Bad input from a client: answered with STATUS and a JSON body, never a 500."""

    def __init__(
        self,
        status: int,
        reason: str,
        file: str | None = None,
        errors: list[ClientError] | None = None,
    ) -> None:
        super().__init__(reason)
        self.status, self.reason, self.file = status, reason, file
        self.errors = errors or []  # each file's own refusal, when several were refused

    def entry(self) -> dict:
        """This file's place in a 200 answer's ``predictions``: no label, its error."""
        error = f"'{self.file}': {self.reason}" if self.file is not None else self.reason
        return {"file": self.file, "error": error, "reason": self.reason, "status": self.status}

    def response(self) -> JSONResponse:
        error = f"'{self.file}': {self.reason}" if self.file is not None else self.reason
        body: dict[str, Any] = {"error": error, "file": self.file, "reason": self.reason}
        if self.errors:
            body["predictions"] = [each.entry() for each in self.errors]
        # A 408 leaves a body half read: the connection cannot carry another request.
        headers = {"connection": "close"} if self.status == 408 else None
        return JSONResponse(body, status_code=self.status, headers=headers)


def multi_refusal(errors: list[ClientError]) -> ClientError:
    """The refusal of a request none of whose files could be read: the first file's
    status and reason (a one-file request's answer is unchanged), or 400 when the files
    failed for different reasons."""
    first = errors[0]
    if len(errors) == 1:
        return first
    status = first.status if all(e.status == first.status for e in errors) else 400
    return ClientError(status, f"none of the {len(errors)} files could be read", None, errors)


def decode_upload(name: str, data: bytes, recipe: dict, max_pixels: int) -> np.ndarray:
    """One uploaded file as model input, or a ClientError naming it.

    The preprocessing's gate reads the header (the pixel count, the format) before
    anything is decoded, so a small file declaring a huge image costs nothing. The
    result is resized pixels in [0, 255]: the network scales them itself.
    """
    from pyimagesearch.core.preprocessing import UnreadableImage, decode_rgb, resize

    if not data:
        raise ClientError(400, "the file is empty (0 bytes)", name)
    try:
        return resize(decode_rgb(data, max_pixels), recipe)
    except UnreadableImage as error:
        reason = error.reason
        if error.status == 413:
            reason = (
                f"the image has {error.pixels:,} pixels, more than this server's {error.bound:,}"
            )
        elif error.status == 415:
            reason = f"not a {FORMATS} image (its header cannot be read)"
        raise ClientError(error.status, reason, name) from None


@dataclass
class Job:
    """The images of one request and the future its rows of probabilities go to."""

    images: np.ndarray
    future: asyncio.Future = field(repr=False)


class MicroBatcher:
    """Gathers the images of concurrent requests into batches for one network thread.

    A batch starts with the oldest waiting request and takes the next ones, in order,
    until ``max_batch`` images or until ``max_wait_s`` has passed with nothing new. A
    request bigger than ``max_batch`` runs alone, in slices.
    """

    def __init__(
        self, predict: Callable[[np.ndarray], np.ndarray], max_batch: int, max_wait_s: float
    ) -> None:
        self.predict, self.max_batch, self.max_wait_s = predict, max_batch, max_wait_s
        self.waiting: deque[Job] = deque()
        self.arrived = asyncio.Event()
        self.network = ThreadPoolExecutor(1, thread_name_prefix="network")
        self.batches = 0
        self.images = 0

    async def classify(self, images: np.ndarray) -> np.ndarray:
        """Class probabilities for IMAGES (N x H x W x 3), one row per image, in order."""
        job = Job(images, asyncio.get_running_loop().create_future())
        self.waiting.append(job)
        self.arrived.set()
        return await job.future

    async def _wait_for_arrival(self, timeout: float | None) -> None:
        self.arrived.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.arrived.wait(), timeout)

    async def _next_batch(self) -> list[Job]:
        while not self.waiting:
            await self._wait_for_arrival(None)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_wait_s
        jobs = [self.waiting.popleft()]
        count = len(jobs[0].images)
        while count < self.max_batch:
            if self.waiting:
                if count + len(self.waiting[0].images) > self.max_batch:
                    break  # it starts the next batch
                jobs.append(self.waiting.popleft())
                count += len(jobs[-1].images)
            elif (remaining := deadline - loop.time()) > 0:
                await self._wait_for_arrival(remaining)
            else:
                break
        return jobs

    def _run_network(self, images: np.ndarray) -> np.ndarray:
        rows = [
            self.predict(images[i : i + self.max_batch])
            for i in range(0, len(images), self.max_batch)
        ]
        return np.concatenate(rows)

    async def run(self) -> None:
        """The worker: forever take a batch, run it in the network thread, hand rows back."""
        loop = asyncio.get_running_loop()
        while True:
            jobs = await self._next_batch()
            jobs = [job for job in jobs if not job.future.done()]  # the client went away
            if not jobs:
                continue
            images = np.concatenate([job.images for job in jobs])
            try:
                probabilities = await loop.run_in_executor(self.network, self._run_network, images)
            except Exception as error:  # a bug or a runtime failure: tell every waiting request
                for job in jobs:
                    if not job.future.done():
                        job.future.set_exception(error)
                continue
            self.batches += 1
            self.images += len(images)
            start = 0
            for job in jobs:
                end = start + len(job.images)
                if not job.future.done():
                    job.future.set_result(probabilities[start:end])
                start = end

    def close(self) -> None:
        self.network.shutdown(wait=False, cancel_futures=True)


def finite(value: Any) -> Any:
    """VALUE with NaN and infinities as None: JSON has no such numbers (a diverged
    training run stores NaN losses in its history)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [finite(item) for item in value]
    return value


class Service:
    """One loaded model, its predictor and batcher, and the request limits."""

    def __init__(
        self,
        predict: Callable[[np.ndarray], np.ndarray],
        metadata: dict,
        model_name: str,
        runtime: str = "tensorflow",
        max_batch: int = 64,
        max_wait_ms: float = 5.0,
        limits: Limits | None = None,
        title: str | None = None,
    ) -> None:
        # PREDICT: the loaded model's predictor (``predict.load_engine``, which applies
        # the stored temperature), made ready off the event loop by start().
        self.metadata, self.model_name = metadata, model_name
        self.predictor = predict
        self.runtime, self.max_batch, self.max_wait_ms = runtime, max_batch, max_wait_ms
        self.limits = limits or Limits()
        self.class_names: list[str] = metadata["class_names"]
        self.recipe: dict = metadata["preprocessing"]
        self.title = page_title(self.class_names, title)
        self.colours = class_colours(self.class_names)
        # Decoding takes memory (up to max_pixels x 15 bytes per image): a few at a time.
        self.decoders = ThreadPoolExecutor(min(4, os.cpu_count() or 1), "decode")
        self.batcher: MicroBatcher | None = None
        self.worker: asyncio.Task | None = None
        self.ready = False
        self.failure: str | None = None
        # The model file's SHA-256 (build_service sets it): which file answers.
        self.sha256: str | None = None

    def identity(self) -> dict:
        """Which model answered: what a result should be reported with."""
        provenance = self.metadata.get("provenance") or {}
        metrics = provenance.get("final_metrics") or {}
        identity = {
            "file": self.model_name,
            "classes": self.class_names,
            "saved_at": provenance.get("saved_at"),
            "test_accuracy": metrics.get("test_accuracy"),
        }
        if warning := self.not_learnt():
            identity["warning"] = warning  # every answer says it: it may be a guess
        return finite(identity)

    def not_learnt(self) -> str | None:
        """The "has not learnt" warning training stored in the model, or None."""
        from pyimagesearch.core.evaluation import not_learnt_warning

        provenance = self.metadata.get("provenance")
        return (
            not_learnt_warning(provenance.get("learning")) if isinstance(provenance, dict) else None
        )

    def description(self) -> dict:
        """What GET /model returns: the public metadata (no absolute path from the
        training machine), the page's title and class colours, runtime and limits."""
        from pyimagesearch.core.modelfile import public_metadata

        public = public_metadata(self.metadata)
        return finite(
            {
                "file": self.model_name,  # its name only: serve_model.py passes no path
                "sha256": self.sha256,
                "title": self.title,  # the operator's words, kept as given
                "class_names": self.class_names,
                "colours": self.colours,
                "label_box": LABEL_BOX,
                "preprocessing": public.get("preprocessing"),
                "calibration": without_paths(public.get("calibration")),
                "provenance": without_paths(public.get("provenance") or {}),
                "runtime": self.runtime,
                "max_batch": self.max_batch,
                "max_wait_ms": self.max_wait_ms,
                "limits": dataclasses.asdict(self.limits),
            }
        )

    def _prepare(self) -> Callable[[np.ndarray], np.ndarray]:
        """Build the predictor and run it once per batch shape class, off the event loop:
        the first call traces (TensorFlow) or compiles (OpenVINO) the network."""
        predict = self.predictor
        shape = (self.recipe["height"], self.recipe["width"], 3)
        for size in sorted({1, self.max_batch}):
            predict(np.zeros((size, *shape), dtype="float32"))
        return predict

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        report.info(f"warming up the network ({self.runtime})...")
        try:
            predict = await loop.run_in_executor(self.decoders, self._prepare)
        except Exception as error:
            self.failure = f"{type(error).__name__}: {error}"
            report.error(f"the network could not be prepared: {self.failure}")
            return
        self.batcher = MicroBatcher(predict, self.max_batch, self.max_wait_ms / 1000)
        self.worker = asyncio.create_task(self.batcher.run())
        self.ready = True
        report.info("ready")

    def close(self) -> None:
        if self.worker is not None:
            self.worker.cancel()
        if self.batcher is not None:
            self.batcher.close()
        self.decoders.shutdown(wait=False, cancel_futures=True)

    async def read_uploads(self, request: Request) -> list[tuple[str, bytes]]:
        """(name, bytes) of each file in the multipart field ``files``, within the limits."""
        limit = self.limits.max_request_bytes
        content_type = request.headers.get("content-type", "")
        if not content_type.lower().startswith("multipart/form-data"):
            raise ClientError(
                415, f"send the images as multipart/form-data, each in the field '{FIELD}'"
            )
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise ClientError(413, f"the request is {int(declared):,} bytes; at most {limit:,}")
        bounded = Request(request.scope, receive=bounded_receive(request.receive, limit))
        most = self.limits.max_images
        try:
            form = await bounded.form(max_files=most, max_fields=most)
        except StarletteHTTPException as error:  # Starlette's multipart refusals
            if "Too many files" in str(error.detail):
                raise ClientError(413, f"more than {most} images in one request") from None
            raise ClientError(400, f"unreadable multipart body: {error.detail}") from None
        try:
            uploads: list[tuple[str, bytes]] = []
            for key, value in form.multi_items():
                if key != FIELD:
                    raise ClientError(
                        400, f"unexpected field '{key}'; send each image as a file in '{FIELD}'"
                    )
                if not isinstance(value, UploadFile):
                    raise ClientError(400, f"field '{FIELD}' holds text; it takes image files")
                name = value.filename or f"{FIELD}[{len(uploads)}]"
                uploads.append((name, await value.read()))
        finally:
            await form.close()
        if not uploads:
            raise ClientError(
                400, f"no images: send one or more files in the multipart field '{FIELD}'"
            )
        return uploads

    async def predict(self, request: Request) -> dict:
        if not self.ready or self.batcher is None:
            raise ClientError(503, "the model is still warming up; try again shortly")
        uploads = await self.read_uploads(request)
        loop = asyncio.get_running_loop()

        def decode_each() -> list[np.ndarray | ClientError]:
            decoded: list[np.ndarray | ClientError] = []
            for name, data in uploads:
                try:
                    decoded.append(decode_upload(name, data, self.recipe, self.limits.max_pixels))
                except ClientError as error:  # this file only: the others are still answered
                    decoded.append(error)
            return decoded

        decoded = await loop.run_in_executor(self.decoders, decode_each)
        good = [image for image in decoded if not isinstance(image, ClientError)]
        if not good:  # nothing usable: the request is refused, as a single bad file always was
            raise multi_refusal([error for error in decoded if isinstance(error, ClientError)])
        rows = iter(await self.batcher.classify(np.stack(good)))
        predictions = []
        for (name, _), image in zip(uploads, decoded, strict=True):
            if isinstance(image, ClientError):
                predictions.append(image.entry())
                continue
            row = next(rows)
            predictions.append(
                {
                    "file": name,
                    "label": self.class_names[int(row.argmax())],
                    "probabilities": {
                        c: float(p) for c, p in zip(self.class_names, row, strict=True)
                    },
                }
            )
        return {"model": self.identity(), "predictions": predictions}


def bounded_receive(
    receive: Callable[[], Awaitable[dict]], limit: int
) -> Callable[[], Awaitable[dict]]:
    """RECEIVE that raises a 413 ClientError once the body passes LIMIT bytes: for bodies
    sent without a Content-Length (chunked), or with a false one. (Uvicorn reads and
    drops the rest of the body after the answer, so the client still gets to read it.)"""
    received = 0

    async def wrapped() -> dict:
        nonlocal received
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit:
                raise ClientError(413, f"the request is larger than {limit:,} bytes")
        return message

    return wrapped


class RequestGuard:
    """ASGI middleware, the application's side of the connection rules
    (``pyimagesearch.serving.connections`` holds the protocol's side):

    - at most ``limits.max_requests`` requests in progress; past it a JSON 503 with
      Retry-After (uvicorn's ``limit_concurrency`` answers in plain text, and counts
      idle connections too, so it is left off);
    - each wait for the next part of a request body lasts at most
      ``limits.body_timeout_s``, then a JSON 408 and the connection is closed;
    - a client that goes away before its body is read is one log line, not Starlette's
      ClientDisconnect traceback.
    """

    def __init__(self, app: Callable, limits: Limits) -> None:
        self.app, self.limits, self.active = app, limits, 0

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.active >= self.limits.max_requests:
            reason = f"the server is busy ({self.active} requests in progress); try again shortly"
            error = ClientError(503, reason).response()
            error.headers["retry-after"] = "1"
            await error(scope, receive, send)
            return
        self.active += 1
        body = TimedBody(receive, self.limits.body_timeout_s)
        try:
            await self.app(scope, body.receive, send)
        except ClientDisconnect:
            client = scope.get("client") or ("?", 0)
            declared = Headers(scope=scope).get("content-length")
            of = f" of {int(declared):,}" if declared and declared.isdigit() else ""
            report.warning(
                f"{client[0]}:{client[1]} closed the connection after "
                f"{body.received:,}{of} bytes of its {scope['method']} {scope['path']} "
                "request; nothing was answered"
            )
        finally:
            self.active -= 1


BODY_TIMEOUTS = Tally("answered %d request(s) 408: the body stopped coming (--body-timeout)")


class TimedBody:
    """RECEIVE with a bound on each wait for body bytes, counting what arrived."""

    def __init__(self, receive: Callable[[], Awaitable[dict]], timeout_s: float) -> None:
        self.inner, self.timeout_s = receive, timeout_s
        self.received, self.complete = 0, False

    async def receive(self) -> dict:
        if self.complete:  # later receives wait for a disconnect: no bound on those
            return await self.inner()
        try:
            message = await asyncio.wait_for(self.inner(), self.timeout_s)
        except TimeoutError:
            BODY_TIMEOUTS.add(asyncio.get_running_loop().time())
            raise ClientError(
                408, f"no part of the request body arrived for {self.timeout_s:g} s"
            ) from None
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            self.complete = not message.get("more_body", False)
        return message


def static_file(
    name: str, media_type: str, words: dict[str, str] | None = None
) -> Callable[[], Awaitable[Response]]:
    """An endpoint answering the file NAME of web/ (rendered with WORDS, if given)."""
    content = (WEB / name).read_bytes()
    if words is not None:
        content = render_page(content.decode("utf-8"), words).encode("utf-8")

    async def endpoint() -> Response:
        return Response(
            content, media_type=media_type, headers={"Content-Security-Policy": PAGE_POLICY}
        )

    return endpoint


def create_app(service: Service) -> FastAPI:
    """The FastAPI application around SERVICE (no interactive docs: they load from a CDN)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        starting = asyncio.create_task(service.start())
        try:
            yield
        finally:
            starting.cancel()
            service.close()

    app = FastAPI(
        title=service.title,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        lifespan=lifespan,
    )
    app.state.service = service
    app.add_middleware(RequestGuard, limits=service.limits)

    @app.exception_handler(ClientError)
    async def client_error(request: Request, error: ClientError) -> JSONResponse:
        return error.response()

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        # Starlette's own refusals (unknown path, wrong method, malformed multipart).
        return ClientError(error.status_code, str(error.detail)).response()

    @app.post("/predict")
    async def predict(request: Request) -> JSONResponse:
        # A JSONResponse as is: FastAPI's validation of a plain dict costs per request.
        return JSONResponse(await service.predict(request))

    @app.get("/model")
    async def model() -> JSONResponse:
        return JSONResponse(service.description())

    @app.get("/healthz")
    async def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        batcher = service.batcher
        body = {
            "ready": service.ready,
            "runtime": service.runtime,
            "error": service.failure,
            # How well requests are being batched: images / batches is the mean batch.
            "batches": batcher.batches if batcher else 0,
            "images": batcher.images if batcher else 0,
        }
        return JSONResponse(body, status_code=200 if service.ready else 503)

    words = page_words(service.class_names, service.title)
    for path, name, media_type, page in (
        ("/", "index.html", "text/html; charset=utf-8", words),
        ("/app.js", "app.js", "text/javascript; charset=utf-8", None),
        ("/style.css", "style.css", "text/css; charset=utf-8", None),
    ):
        app.add_api_route(path, static_file(name, media_type, page), methods=["GET"])
    return app


# The environment variable through which serve_model.py hands its settings to worker
# processes: uvicorn starts each worker afresh (spawn), so the app is built by import.
SETTINGS_VARIABLE = "PYIMAGESEARCH_SERVE_SETTINGS"


@dataclass
class Settings:
    """Everything a worker process needs to build its service (JSON in SETTINGS_VARIABLE)."""

    model: str
    runtime: str = "auto"
    precision: str = "auto"
    max_batch: int = 64
    max_wait_ms: float = 5.0
    limits: Limits = field(default_factory=Limits)
    title: str | None = None
    debug: bool = False
    connections: ConnectionRules = field(default_factory=ConnectionRules)
    expect_sha256: str | None = None
    # A Keras file saved elsewhere, without our metadata (``modelfile.Adoption``).
    classes: list[str] | None = None
    interpolation: str | None = None
    scale: str | None = None

    def to_json(self) -> str:
        import json

        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Settings:
        import json

        values = json.loads(text)
        values["limits"] = Limits(**values["limits"])
        values["connections"] = ConnectionRules(**values["connections"])
        return cls(**values)


def build_service(settings: Settings) -> Service:
    """Load the model (its compiled network without TensorFlow where valid) into a Service.

    The server runs one micro-batch at a time, of any size up to --max-batch, so the
    compiled network keeps a dynamic batch; on the Keras path `auto` is TensorFlow,
    which served more images/s with a lower p99 than OpenVINO converted at load time
    (bench/SERVE.md).
    """
    from pyimagesearch.core.modelfile import Adoption, check_sha256
    from pyimagesearch.inference.predict import load_engine

    sha256 = check_sha256(settings.model, settings.expect_sha256)
    adoption = (
        Adoption(settings.classes, settings.interpolation, settings.scale)
        if settings.classes
        else None
    )
    engine = load_engine(
        settings.model, settings.runtime, settings.precision, debug=settings.debug,
        adoption=adoption,
    )  # fmt: skip
    service = Service(
        engine.predict,
        engine.metadata,
        Path(settings.model).name,
        engine.description,
        settings.max_batch,
        settings.max_wait_ms,
        settings.limits,
        title=settings.title,
    )
    service.sha256 = sha256
    return service


def app_from_environment() -> FastAPI:
    """The app of one worker process, from the settings serve_model.py put in the environment.

    The connection rules go onto the protocol class that uvicorn's config names (a class
    made per process could not cross to a spawned worker): one process, one server."""
    from pyimagesearch.serving.connections import GuardedH11Protocol

    settings = Settings.from_json(os.environ[SETTINGS_VARIABLE])
    GuardedH11Protocol.rules = settings.connections
    return create_app(build_service(settings))
