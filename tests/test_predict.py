"""Which engine runs the network, and that OpenVINO keeps batches in order."""

import numpy as np
import pytest

from pyimagesearch import predict
from pyimagesearch.errors import UserError
from pyimagesearch.resnet import ResNet
from tests.conftest import run_script


def test_auto_leaves_small_jobs_to_tensorflow():
    assert predict.choose_runtime("auto", 16) == "tensorflow"
    assert predict.choose_runtime("tensorflow", 100_000) == "tensorflow"


def test_auto_uses_openvino_for_large_jobs_on_a_cpu(monkeypatch):
    monkeypatch.setattr(predict, "openvino_installed", lambda: True)
    monkeypatch.setattr(predict.tf.config, "list_physical_devices", lambda kind=None: [])
    assert predict.choose_runtime("auto", predict.OPENVINO_MIN_IMAGES) == "openvino"
    monkeypatch.setattr(predict.tf.config, "list_physical_devices", lambda kind=None: ["GPU:0"])
    assert predict.choose_runtime("auto", 100_000) == "tensorflow"


def test_missing_openvino_is_a_clear_error_or_a_fallback(monkeypatch):
    monkeypatch.setattr(predict, "openvino_installed", lambda: False)
    assert predict.choose_runtime("auto", 100_000) == "tensorflow"
    with pytest.raises(UserError, match="pip install"):
        predict.choose_runtime("openvino", 10)


@pytest.mark.skipif(not predict.openvino_installed(), reason="openvino is not installed")
def test_openvino_stream_matches_keras_batch_by_batch():
    model = ResNet.build(32, 32, 3, 2, (1, 1), (8, 16, 32))
    rng = np.random.default_rng(0)
    batches = [(np.arange(i * 5, i * 5 + n), rng.random((n, 32, 32, 3), dtype="float32"))
               for i, n in enumerate((5, 5, 5, 5, 3))]  # fmt: skip
    engine = predict.make_predictor(model, runtime="openvino")
    streamed = list(engine.stream(iter(batches)))
    assert [list(indices) for indices, _ in streamed] == [list(i) for i, _ in batches]
    for (_, images), (_, probabilities) in zip(batches, streamed, strict=True):
        expected = model.predict(images, verbose=0)
        np.testing.assert_allclose(probabilities, expected, rtol=0, atol=1e-4)
    np.testing.assert_allclose(engine(batches[0][1]), streamed[0][1], rtol=0, atol=1e-6)


@pytest.mark.skipif(not predict.openvino_installed(), reason="openvino is not installed")
def test_openvino_sends_no_usage_statistics(tmp_path):
    """OpenVINO's telemetry is opt-out; with it on, it would leave its client id in ~/intel."""
    code = (
        "from pyimagesearch import predict\n"
        "from pyimagesearch.resnet import ResNet\n"
        "model = ResNet.build(32, 32, 3, 2, (1, 1), (8, 16, 32))\n"
        "predict.make_predictor(model, runtime='openvino')\n"
    )
    result = run_script("-c", code, env={"HOME": str(tmp_path)})
    assert result.returncode == 0, result.stderr[-2000:]
    assert not (tmp_path / "intel").exists()
