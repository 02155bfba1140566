"""serve_model.py on the fast path (the model file's compiled network, no TensorFlow),
and --workers N processes sharing one port."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from tests.serving import good_request
from tests.test_serve_slow import capped_server


@pytest.fixture(scope="module")
def fast_model(tmp_path_factory) -> Path:
    from pyimagesearch.core.preprocessing import default_recipe
    from pyimagesearch.training.serialization import save_model
    from pyimagesearch.training.train import build_model

    path = tmp_path_factory.mktemp("model") / "fast.keras"
    metadata = {"class_names": ["cat", "dog"], "preprocessing": default_recipe((32, 32))}
    save_model(build_model(2, (32, 32)), path, metadata, compiled=True)
    return path


def test_two_workers_answer_on_one_port_without_tensorflow(fast_model: Path, tmp_path: Path):
    """Mutation: serve.build_service loading with runtime "tensorflow" whatever the
    option says fails the runtime and log checks."""
    log = tmp_path / "server.log"
    # float32 pinned: "auto" runs bfloat16 on CPUs that compute it natively (AMX).
    flags = ("--runtime", "auto", "--precision", "float32", "--workers", "2")
    with capped_server(fast_model, log, *flags) as url:
        # Both workers must come up: each answers /readyz only once it is warm. Each probe
        # is a fresh connection, so the probes reach either worker; wait (at most 120 s)
        # for 20 ready answers in a row, then every one of them names the fast runtime.
        # (Mutation: /readyz answering 200 with "ready": false, or a worker on the
        # TensorFlow runtime, fails here; the old check filtered unready answers out.)
        answered: list[dict] = []
        deadline = time.monotonic() + 120
        while len(answered) < 20 and time.monotonic() < deadline:
            response = httpx.get(url + "readyz", timeout=30)
            answered = [*answered, response.json()] if response.status_code == 200 else []
            if not answered:
                time.sleep(0.5)
        assert len(answered) == 20, f"no 20 ready answers in a row within 120 s: {log.read_text()}"
        assert all(body["ready"] and body["runtime"] == "OpenVINO, f32" for body in answered)
        with httpx.Client(base_url=url, timeout=30) as client:
            answers = [client.request(**good_request()) for _ in range(8)]
    assert all(answer.status_code == 200 for answer in answers), answers[0].text
    assert {a.json()["predictions"][0]["label"] for a in answers} <= {"cat", "dog"}
    text = log.read_text()
    assert "starting 2 worker processes" in text
    assert text.count("warming up the network (OpenVINO, f32)") == 2, text
    assert "Traceback" not in text and "TensorFlow" not in text
