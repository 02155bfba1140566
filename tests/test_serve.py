"""The HTTP API in-process (FastAPI's TestClient): results, identity, limits, bad input,
batching. An untrained model is enough here and needs no real images; the real server
on real images is tests/test_serve_live.py."""

import asyncio
import re
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from pyimagesearch.core.palette import LABEL_BOX, class_colours
from pyimagesearch.core.preprocessing import default_recipe, load_image
from pyimagesearch.serving.serve import (
    Limits,
    MicroBatcher,
    Service,
    Settings,
    build_service,
    create_app,
    page_title,
)
from pyimagesearch.serving.server_process import running_server
from pyimagesearch.training.serialization import load_model, save_model
from pyimagesearch.training.train import build_model
from tests.conftest import run_script, write_image
from tests.serving import (
    CASES,
    MAX_IMAGES,
    MAX_REQUEST_BYTES,
    check_refusal,
    good_request,
    image_bytes,
)

CLASSES = ["Parasitized", "Uninfected"]
PROVENANCE = {
    "saved_at": "2026-01-02T03:04:05+00:00",
    "history": {"loss": [0.7, float("nan")]},  # a diverged run: NaN is no JSON number
    "final_metrics": {"test_accuracy": 0.875},
}


# A model of other classes, saved by a training machine that recorded absolute paths
# (as models saved before serialization.public_metadata's rule do).
OTHER_CLASSES = ["zero", "one"]
TRAINING_FOLDER = "/home/trainer/private/zero-one"
OTHER_PROVENANCE = {
    "saved_at": "2026-02-03T04:05:06+00:00",
    "dataset": TRAINING_FOLDER,
    "excluded": {"list": "/home/trainer/private/suspects.txt", "images": 3},
    "notes": {"copied_from": "C:\\Users\\trainer\\models\\m.keras"},  # no known field
    "final_metrics": {"test_accuracy": 0.99},
}


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("serve") / "served.model"
    metadata = {"class_names": CLASSES, "preprocessing": default_recipe(), "provenance": PROVENANCE}
    save_model(build_model(len(CLASSES)), path, metadata, compiled=True)
    return path


@pytest.fixture(scope="module")
def other_model(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("serve_other") / "zero_one.keras"
    metadata = {
        "class_names": OTHER_CLASSES,
        "preprocessing": default_recipe(),
        "provenance": OTHER_PROVENANCE,
    }
    save_model(build_model(len(OTHER_CLASSES)), path, metadata, compiled=True)
    return path


def make_service(path: Path, **options) -> Service:
    """The service serve_model.py builds, on the Keras path (--runtime tensorflow)."""
    limits = Limits(max_request_bytes=MAX_REQUEST_BYTES, max_images=MAX_IMAGES)
    return build_service(Settings(str(path), "tensorflow", limits=limits, **options))


def wait_ready(client: TestClient, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while (response := client.get("/readyz")).status_code != 200:
        assert time.monotonic() < deadline, response.json()
        time.sleep(0.05)


@pytest.fixture(scope="module")
def client(saved_model: Path):
    with TestClient(create_app(make_service(saved_model, max_batch=8))) as client:
        wait_ready(client)
        yield client


def post_files(client: TestClient, files: list[tuple[str, bytes]]):
    return client.post(
        "/predict", files=[("files", (name, data, "image/png")) for name, data in files]
    )


def test_predictions_are_the_models_on_the_same_files(
    client: TestClient, saved_model: Path, tmp_path: Path
):
    """RGB PNG, grayscale JPEG and RGBA PNG of different sizes, in one request: the
    probabilities the model gives on load_image's arrays, in the order sent."""
    paths = [
        write_image(tmp_path / "a.png", size=(90, 70), seed=1),
        write_image(tmp_path / "b.jpg", mode="L", fmt="JPEG", size=(64, 64), seed=2),
        write_image(tmp_path / "c.png", mode="RGBA", size=(40, 130), seed=3),
    ]
    response = post_files(client, [(p.name, p.read_bytes()) for p in paths])
    assert response.status_code == 200, response.text
    body = response.json()
    model, metadata = load_model(saved_model)
    inputs = np.stack([load_image(str(p), metadata["preprocessing"]) for p in paths])
    expected = model.predict(inputs, verbose=0)
    assert [p["file"] for p in body["predictions"]] == ["a.png", "b.jpg", "c.png"]
    for prediction, row in zip(body["predictions"], expected, strict=True):
        served = [prediction["probabilities"][name] for name in CLASSES]
        np.testing.assert_allclose(served, row, atol=1e-6)
        assert prediction["label"] == CLASSES[int(np.argmax(served))]
    assert body["model"] == {
        "file": "served.model",
        "classes": CLASSES,
        "saved_at": PROVENANCE["saved_at"],
        "test_accuracy": 0.875,
    }


def test_concurrent_requests_each_get_their_own_rows(client: TestClient):
    """Eight clients at once: each answer is the one its image gets alone."""
    images = [(f"img{i}.png", image_bytes(seed=10 + i, size=(50 + 7 * i, 60))) for i in range(8)]
    alone = {name: post_files(client, [(name, data)]).json() for name, data in images}
    answers: dict[str, dict] = {}

    def send(name: str, data: bytes) -> None:
        answers[name] = post_files(client, [(name, data)]).json()

    threads = [threading.Thread(target=send, args=image) for image in images]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    for name, _ in images:
        assert answers[name]["predictions"][0]["file"] == name
        together = answers[name]["predictions"][0]["probabilities"]
        by_itself = alone[name]["predictions"][0]["probabilities"]
        np.testing.assert_allclose(list(together.values()), list(by_itself.values()), atol=1e-6)


def test_micro_batcher_gathers_requests_and_returns_rows_in_order():
    """Nine requests queued together (1 to 12 images, max_batch 8): fewer network calls
    than requests, none over 8 images, and every request gets its own rows in order."""
    calls = []

    def network(images: np.ndarray) -> np.ndarray:
        calls.append(len(images))
        return images[:, 0, 0, :2].copy()  # each image's row is its own marker

    async def scenario():
        batcher = MicroBatcher(network, max_batch=8, max_wait_s=0.005)
        worker = asyncio.create_task(batcher.run())
        sizes = [1, 3, 2, 1, 5, 1, 1, 12, 2]
        jobs = [
            (request + np.arange(n)[:, None, None, None] / 100 + np.zeros((n, 2, 2, 2))).astype(
                "float32"
            )
            for request, n in enumerate(sizes)
        ]
        results = await asyncio.gather(*(batcher.classify(images) for images in jobs))
        worker.cancel()
        batcher.close()
        return jobs, results, batcher

    jobs, results, batcher = asyncio.run(scenario())
    for images, rows in zip(jobs, results, strict=True):
        assert np.array_equal(rows, images[:, 0, 0, :2])
    assert calls == [7, 7, 8, 4, 2]  # 1+3+2+1 | 5+1+1 | 12 alone, in slices | 2
    assert batcher.batches == 4 and batcher.images == sum(len(j) for j in jobs)


def test_a_network_failure_fails_its_requests_and_the_worker_goes_on():
    failures = [RuntimeError("out of memory")]

    def network(images: np.ndarray) -> np.ndarray:
        if failures:
            raise failures.pop()
        return np.ones((len(images), 2), "float32")

    async def scenario():
        batcher = MicroBatcher(network, max_batch=4, max_wait_s=0)
        worker = asyncio.create_task(batcher.run())
        with pytest.raises(RuntimeError, match="out of memory"):
            await batcher.classify(np.zeros((1, 2, 2, 3), "float32"))
        rows = await asyncio.wait_for(batcher.classify(np.zeros((2, 2, 2, 3), "float32")), 10)
        worker.cancel()
        batcher.close()
        return rows

    assert asyncio.run(scenario()).shape == (2, 2)


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input_gets_a_4xx_naming_file_and_reason_then_serving_goes_on(client: TestClient, case):
    check_refusal(case, client.request(**case.request()))
    response = client.request(**good_request())
    assert response.status_code == 200, response.text
    assert response.json()["predictions"][0]["file"] == "good.png"


def test_health_readiness_and_model_description(client: TestClient):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz").json()
    assert (
        ready["ready"] is True
        and ready["runtime"] == "TensorFlow, float32"
        and ready["error"] is None
    )
    model = client.get("/model").json()
    assert model["file"] == "served.model"
    assert model["class_names"] == CLASSES
    assert model["preprocessing"] == default_recipe()
    assert model["provenance"]["final_metrics"] == {"test_accuracy": 0.875}
    assert model["provenance"]["history"]["loss"] == [0.7, None]  # NaN: no JSON number
    assert model["limits"]["max_images"] == MAX_IMAGES


def test_page_script_and_style_are_served_from_the_app(client: TestClient):
    """No build step, nothing fetched from elsewhere (no CDN): the page names only
    paths of this server, and says so in its Content-Security-Policy."""
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert 'id="files"' in page.text and 'src="/app.js"' in page.text
    for path, kind in (("/app.js", "text/javascript"), ("/style.css", "text/css")):
        response = client.get(path)
        assert response.status_code == 200 and response.headers["content-type"].startswith(kind)
        assert "http://" not in response.text and "https://" not in response.text
    assert "http://" not in page.text and "https://" not in page.text
    assert client.get("/docs").status_code == 404  # FastAPI's docs would load a CDN


def test_predict_before_warm_up_is_a_503_and_health_is_ok(saved_model: Path):
    """Without the lifespan (no warm-up), the server says it is not ready yet."""
    client = TestClient(create_app(make_service(saved_model)))
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 503
    response = client.request(**good_request())
    assert response.status_code == 503 and "warming up" in response.json()["reason"]


def test_cli_refuses_a_missing_model_and_a_taken_port(tmp_path: Path):
    result = run_script(
        "serve_model.py", "--model", str(tmp_path / "none.model"), "--port", "0", timeout=120
    )
    assert result.returncode == 2, result.stderr
    assert "does not exist" in result.stderr and "Traceback" not in result.stderr
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = str(taken.getsockname()[1])
        result = run_script("serve_model.py", "--model", "x.model", "--port", port, timeout=120)
    assert result.returncode == 2, result.stderr
    assert "cannot listen on 127.0.0.1:" in result.stderr and "Traceback" not in result.stderr


def strings(value) -> list[str]:
    """Every string in a JSON value, keys included."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [text for key, item in value.items() for text in [key, *strings(item)]]
    if isinstance(value, list):
        return [text for item in value for text in strings(item)]
    return []


def absolute_paths(value) -> list[str]:
    return [
        text
        for text in strings(value)
        if text.startswith(("/", "~")) or re.match(r"^[A-Za-z]:[\\/]|^\\\\", text)
    ]


def page_heading(page: str) -> tuple[str, str]:
    """The page's <title> and <h1>, as the HTML has them."""
    title = re.search(r"<title>(.*?)</title>", page, re.S).group(1)
    heading = re.search(r"<h1[^>]*>(.*?)</h1>", page, re.S).group(1)
    return title, heading


def test_page_title_comes_from_the_class_names():
    assert page_title(["Parasitized", "Uninfected"]) == "Malaria cell classifier"
    assert page_title(["cat", "dog"]) == "Image classifier: cat / dog"
    assert page_title(["Uninfected", "Parasitized"]) == "Image classifier: Uninfected / Parasitized"
    digits = [f"digit_{d}" for d in range(10)]
    assert page_title(digits) == "Image classifier (10 classes)"
    assert page_title(["a" * 40, "b" * 40]) == "Image classifier (2 classes)"  # too long
    assert page_title(["cat", "dog"], "Pets") == "Pets"
    assert page_title(["Parasitized", "Uninfected"], "Blood smears") == "Blood smears"


def test_malaria_model_keeps_the_tutorial_page(client: TestClient):
    page = client.get("/").text
    assert page_heading(page) == ("Malaria cell classifier", "Malaria cell classifier")
    assert "Drop cell images here" in page and "not a diagnosis" in page
    model = client.get("/model").json()
    assert model["title"] == "Malaria cell classifier"
    assert model["colours"] == class_colours(CLASSES)
    assert model["colours"] == {"Parasitized": "#ff3b3b", "Uninfected": "#2ee65a"}


def test_other_model_page_is_named_by_its_classes_and_never_says_cell(other_model: Path):
    """The page (HTML, script, style) of a zero/one model: titled by its classes, with
    no word of the malaria example; the script colours from /model, not from CSS."""
    client = TestClient(create_app(make_service(other_model)))
    page = client.get("/")
    assert page.status_code == 200, page.text
    assert page_heading(page.text) == ("Image classifier: zero / one",) * 2
    assert "Drop images here" in page.text
    for text in (page.text, client.get("/app.js").text, client.get("/style.css").text):
        assert not re.search(r"cell|malaria|parasit|uninfected|diagnos", text, re.I), text
    assert "{{" not in page.text  # every placeholder filled
    assert client.get("/model").json()["title"] == "Image classifier: zero / one"


def test_other_model_colours_are_the_palettes(other_model: Path):
    client = TestClient(create_app(make_service(other_model)))
    model = client.get("/model").json()
    assert model["class_names"] == OTHER_CLASSES
    assert model["colours"] == class_colours(OTHER_CLASSES)
    assert model["label_box"] == LABEL_BOX


def test_model_description_holds_no_absolute_path(other_model: Path):
    """The stored provenance names the training folder, an --exclude list and another
    file by absolute paths: /model gives their last names only."""
    assert load_model(other_model)[1]["provenance"]["dataset"] == TRAINING_FOLDER
    client = TestClient(create_app(make_service(other_model)))
    body = client.get("/model").json()
    assert absolute_paths(body) == []
    assert body["provenance"]["dataset"] == "zero-one"
    assert body["provenance"]["excluded"] == {"list": "suspects.txt", "images": 3}
    assert body["provenance"]["notes"] == {"copied_from": "m.keras"}
    assert "trainer" not in client.get("/model").text


def test_a_given_title_is_escaped_on_the_page(other_model: Path):
    """A title is user text: shown as text, never as markup (and no placeholder in it
    is expanded)."""
    title = '/<script>alert("x")</script> & {{items}}'  # a leading "/" is no path here
    client = TestClient(create_app(make_service(other_model, title=title)))
    page = client.get("/").text
    escaped = "/&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; {{items}}"
    assert page_heading(page) == (escaped, escaped)
    assert "<script>alert" not in page and page.count("<script") == 1  # only /app.js
    assert client.get("/model").json()["title"] == title
    assert "script-src" not in client.get("/").headers["content-security-policy"]
    assert "default-src 'self'" in client.get("/").headers["content-security-policy"]


def test_cli_title_option_and_other_model_over_http(other_model: Path, tmp_path: Path):
    """serve_model.py --title sets the page's title; its /model, in a real process,
    holds no absolute path; an empty title is refused."""
    import httpx

    title = "Zero or one?"
    with running_server(other_model, tmp_path / "server.log", "--title", title) as url:
        page = httpx.get(url, timeout=30).text
        model = httpx.get(url + "model", timeout=30).json()
    assert page_heading(page) == (title, title)
    assert model["title"] == title and model["colours"] == class_colours(OTHER_CLASSES)
    assert absolute_paths(model) == []
    log = (tmp_path / "server.log").read_text()
    assert "2 classes: zero, one" in log and f"page title: {title}" in log
    result = run_script("serve_model.py", "--model", str(other_model), "--title", "  ")
    assert result.returncode == 2 and "--title: must not be empty" in result.stderr


def test_a_multi_file_post_answers_every_good_image_and_each_bad_one_alone(
    saved_model: Path, tmp_path: Path
):
    """The real server: one empty, one truncated and one non-image file among two good
    PNGs get one error entry each, in place; the good ones get the answer they get alone,
    with a 200. Only a request with no readable file is refused (400: mixed reasons)."""
    import httpx

    from tests.serving import MULTIPART, multipart, truncated_png

    first, second = image_bytes(seed=11), image_bytes(seed=12, size=(50, 80))
    files = [("a.png", first), ("empty.png", b""), ("cut.png", truncated_png()),
             ("notes.txt", b"hello"), ("b.png", second)]  # fmt: skip
    bad = [("empty.png", b""), ("cut.png", truncated_png()), ("notes.txt", b"hello")]

    def send(client: httpx.Client, parts: list[tuple[str, bytes]]) -> httpx.Response:
        body = multipart([("files", name, data) for name, data in parts])
        return client.post("/predict", content=body, headers={"content-type": MULTIPART})

    with running_server(saved_model, tmp_path / "server.log", "--runtime", "tensorflow") as url:
        with httpx.Client(base_url=url.rstrip("/"), timeout=60) as client:
            mixed, alone = send(client, files), send(client, [files[0], files[4]])
            none = send(client, bad)
    assert mixed.status_code == 200, mixed.text
    entries = mixed.json()["predictions"]
    assert [e["file"] for e in entries] == [name for name, _ in files]
    good = [entries[0], entries[4]]
    assert good == alone.json()["predictions"]
    assert all(set(e) == {"file", "label", "probabilities"} for e in good)
    for entry, (status, word) in zip(
        entries[1:4], [(400, "empty"), (400, "truncated"), (415, "not a PNG")], strict=True
    ):
        assert set(entry) == {"file", "error", "reason", "status"}, entry
        assert entry["status"] == status and word in entry["reason"], entry
        assert entry["file"] in entry["error"]
    assert none.status_code == 400, none.text
    refused = none.json()
    assert "none of the 3 files" in refused["reason"]
    assert [e["file"] for e in refused["predictions"]] == [name for name, _ in bad]
