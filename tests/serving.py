"""Helpers for the HTTP server's tests: the bad-input catalogue, headless Chromium, and
synthetic cells for the README's screenshot.

The catalogue is sent in-process (test_serve.py) and to the real server
(test_serve_live.py): each case is one request that must get a 4xx JSON answer naming
the file (when there is one) and the reason, never a 500.

    python -m tests.serving --model saved_model.model --output docs/serve.png

makes the README's screenshot from drawn cells (no NIH image may be shown there).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import shutil
import struct
import tempfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter

from tests.conftest import NO_BROWSER

# The limits both test servers run with (serve_model.py --max-images 4 --max-request-mb 1).
MAX_IMAGES = 4
MAX_REQUEST_BYTES = 1 << 20
BOUNDARY = "pyimagesearch-test-boundary"


def image_bytes(seed: int = 0, size=(90, 70), fmt: str = "PNG", mode: str = "RGB") -> bytes:
    """A small random image, encoded in memory."""
    array = np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(array, mode="RGB").convert(mode).save(buffer, format=fmt)
    return buffer.getvalue()


def huge_png(side: int = 20000) -> bytes:
    """A valid 1-bit grayscale PNG of side x side pixels: about 50 KB, 1.2 GB decoded to
    RGB (as tests/test_safety.py makes it; only its header may be read)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    compressor = zlib.compressobj(9)
    row = b"\x00" * (1 + side // 8)
    data = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")
    )


Part = tuple[str, str | None, bytes]  # (field name, file name or None for a text field, data)


def multipart(parts: list[Part]) -> bytes:
    """A multipart/form-data body with BOUNDARY, built by hand so that odd requests
    (no parts, text in the files field) can be sent exactly."""
    chunks = []
    for name, filename, data in parts:
        disposition = f'form-data; name="{name}"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
        headers = f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n"
        if filename is not None:
            headers += "Content-Type: application/octet-stream\r\n"
        chunks.append(headers.encode() + b"\r\n" + data + b"\r\n")
    return b"".join(chunks) + f"--{BOUNDARY}--\r\n".encode()


MULTIPART = f"multipart/form-data; boundary={BOUNDARY}"


@dataclass
class Case:
    id: str
    status: int
    file: str | None  # the file the answer must name, or None
    fragment: str  # part of the reason
    body: bytes = b""
    content_type: str = MULTIPART
    chunked: bool = False  # sent without Content-Length
    method: str = "POST"
    path: str = "/predict"

    def request(self) -> dict:
        """Keyword arguments for httpx's (and TestClient's) ``request``."""
        content = iter([self.body]) if self.chunked else self.body
        return {
            "method": self.method,
            "url": self.path,
            "content": content if self.method == "POST" else None,
            "headers": {"content-type": self.content_type},
        }


def truncated_png() -> bytes:
    data = image_bytes(seed=3, size=(120, 120))
    return data[: len(data) // 2]


def tiff() -> bytes:
    return image_bytes(seed=4, fmt="TIFF")


def one(name: str, data: bytes) -> bytes:
    """A body with one file in the field 'files'."""
    return multipart([("files", name, data)])


GOOD = image_bytes(seed=1)
OVERSIZED = one("big.png", np.random.default_rng(5).bytes(MAX_REQUEST_BYTES + 1))

CASES = [
    Case("not-multipart", 415, None, "multipart/form-data", b'{"files": "x.png"}',
         "application/json"),
    Case("no-parts", 400, None, "no images", multipart([])),
    Case("wrong-field-name", 400, None, "unexpected field 'file'",
         multipart([("file", "a.png", GOOD)])),
    Case("text-in-files-field", 400, None, "holds text", multipart([("files", None, b"a.png")])),
    Case("empty-file", 400, "empty.png", "empty", one("empty.png", b"")),
    Case("not-an-image", 415, "notes.txt", "not a PNG", one("notes.txt", b"hello")),
    Case("tiff", 415, "cell.tiff", "not a PNG", one("cell.tiff", tiff())),
    Case("truncated", 400, "cut.png", "truncated", one("cut.png", truncated_png())),
    Case("huge-pixels", 413, "huge.png", "400,000,000 pixels", one("huge.png", huge_png())),
    Case("too-many-images", 413, None, f"more than {MAX_IMAGES} images",
         multipart([("files", f"{i}.png", GOOD) for i in range(MAX_IMAGES + 1)])),
    Case("too-large", 413, None, "bytes; at most", OVERSIZED),  # Content-Length said so
    Case("too-large-chunked", 413, None, "larger than", OVERSIZED, chunked=True),
    Case("no-boundary", 400, None, "multipart", b"--x\r\n", "multipart/form-data"),
    Case("garbage-multipart", 400, None, "multipart", b"this is not multipart at all" * 10),
    Case("get-predict", 405, None, "Method Not Allowed", method="GET"),
    Case("unknown-path", 404, None, "Not Found", method="GET", path="/predict/../../etc/passwd"),
]  # fmt: skip


def check_refusal(case: Case, response) -> None:
    """The answer a refused request must get: its status, JSON naming file and reason."""
    assert response.status_code == case.status, (case.id, response.status_code, response.text)
    body = response.json()
    assert set(body) == {"error", "file", "reason"}, body
    assert body["file"] == case.file, body
    assert case.fragment in body["reason"], body
    if case.file is not None:
        assert case.file in body["error"]


def good_request() -> dict:
    return Case("good", 200, None, "", one("good.png", GOOD)).request()


@contextlib.contextmanager
def chromium(width: int = 1100, height: int = 760) -> Iterator:
    """Debian's headless Chromium under selenium (no browser download: both binaries
    come from apt, as .ci/run installs them)."""
    from selenium import webdriver

    binary, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if not (binary and driver_path):
        if os.environ.get("REQUIRE_BROWSER"):
            pytest.fail(f"REQUIRE_BROWSER is set, but {NO_BROWSER}", pytrace=False)
        pytest.skip(NO_BROWSER)
    os.environ.setdefault("SE_AVOID_STATS", "true")  # should Selenium Manager ever run
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--disable-gpu", f"--window-size={width},{height}"):  # fmt: skip
        options.add_argument(argument)
    driver = webdriver.Chrome(
        options=options, service=webdriver.ChromeService(executable_path=driver_path)
    )
    try:
        driver.set_page_load_timeout(30)
        driver.set_script_timeout(30)
        yield driver
    finally:
        driver.quit()


def upload_and_wait(driver, url: str, files: list[Path], timeout: float = 60) -> list:
    """Open the page, pick FILES in its file input, wait until every tile has a result."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url)
    driver.find_element(By.ID, "files").send_keys("\n".join(str(f.resolve()) for f in files))
    WebDriverWait(driver, timeout).until(
        lambda d: (
            len(d.find_elements(By.CSS_SELECTOR, ".tile[data-label], .tile.failed")) == len(files)
        )
    )
    return driver.find_elements(By.CSS_SELECTOR, ".tile")


def drawn_cells(folder: Path, count: int = 8, seed: int = 0) -> list[Path]:
    """Cell-like pictures drawn with PIL: a pink disc on black, every other one with a
    dark purple dot (what a stained parasite looks like); not NIH images."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        side = int(rng.integers(110, 150))
        image = Image.new("RGB", (side, side), (0, 0, 0))
        draw = ImageDraw.Draw(image)
        margin = int(rng.integers(6, 14))
        tint = tuple(int(v) for v in rng.integers((200, 120, 150), (235, 160, 190)))
        draw.ellipse((margin, margin, side - margin, side - margin), fill=tint)
        if index % 2 == 0:
            x, y = (int(v) for v in rng.integers(side // 3, 2 * side // 3, 2))
            r = int(rng.integers(6, 11))
            draw.ellipse((x - r, y - r, x + r, y + r), fill=(90, 30, 110))
        path = folder / f"drawn_cell_{index + 1}.png"
        image.filter(ImageFilter.GaussianBlur(1.5)).save(path)
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> int:
    from pyimagesearch.serving.server_process import running_server

    parser = argparse.ArgumentParser(description="The README's screenshot of the page.")
    parser.add_argument("--model", required=True)
    parser.add_argument("--output", default="docs/serve.png")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        cells = drawn_cells(Path(folder) / "cells")
        log = Path(folder) / "server.log"
        with running_server(args.model, log, "--runtime", "tensorflow") as url:
            with chromium(1000, 640) as driver:
                upload_and_wait(driver, url, cells)
                driver.save_screenshot(args.output)
    print(f"[INFO] screenshot written to '{args.output}'")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
