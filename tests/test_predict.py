"""Which engine runs the network: the model file's compiled network without TensorFlow
wherever it is valid, Keras otherwise, and both give the same answers."""

import csv
import shutil
import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from pyimagesearch.core import compiled
from pyimagesearch.core.errors import UserError
from pyimagesearch.inference import predict
from pyimagesearch.resnet import ResNet
from pyimagesearch.training.serialization import save_model
from pyimagesearch.training.train import build_model
from tests.conftest import run_script, without_tensorflow, write_image

RECIPE = {"color": "RGB", "height": 32, "width": 32, "interpolation": "bilinear", "scale": "1/255"}


def test_auto_leaves_small_jobs_to_tensorflow():
    assert predict.choose_runtime("auto", 16) == "tensorflow"
    assert predict.choose_runtime("tensorflow", 100_000) == "tensorflow"


def test_auto_uses_openvino_for_large_jobs_on_a_cpu(monkeypatch):
    monkeypatch.setattr(predict, "openvino_installed", lambda: True)
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: [])
    assert predict.choose_runtime("auto", predict.OPENVINO_MIN_IMAGES) == "openvino"
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: ["GPU:0"])
    assert predict.choose_runtime("auto", 100_000) == "tensorflow"


def test_missing_openvino_is_a_clear_error_or_a_fallback(monkeypatch):
    monkeypatch.setattr(predict, "openvino_installed", lambda: False)
    assert predict.choose_runtime("auto", 100_000) == "tensorflow"
    with pytest.raises(UserError, match="pip install"):
        predict.choose_runtime("openvino", 10)


def test_openvino_stream_matches_keras_batch_by_batch():
    """OpenVINO is a pinned requirement: no skip when it is missing (a broken install
    must fail here). Batches come back in order, each the Keras model's answer."""
    model = ResNet.build(32, 32, 3, 2, (1, 1), (8, 16, 32))
    rng = np.random.default_rng(0)
    batches = [(np.arange(i * 5, i * 5 + n), 255 * rng.random((n, 32, 32, 3), dtype="float32"))
               for i, n in enumerate((5, 5, 5, 5, 3))]  # fmt: skip
    engine = predict.make_predictor(model, "float32", runtime="openvino")
    streamed = list(engine.stream(iter(batches)))
    assert [list(indices) for indices, _ in streamed] == [list(i) for i, _ in batches]
    for (_, pixels), (_, probabilities) in zip(batches, streamed, strict=True):
        expected = model.predict(pixels / 255.0, verbose=0)
        np.testing.assert_allclose(probabilities, expected, rtol=0, atol=1e-5)
    np.testing.assert_allclose(engine(batches[0][1]), streamed[0][1], rtol=0, atol=1e-6)


def test_openvino_sends_no_usage_statistics(tmp_path):
    """OpenVINO's telemetry is opt-out; with it on, it would leave its client id in ~/intel."""
    code = (
        "from pyimagesearch.inference import predict\n"
        "from pyimagesearch.resnet import ResNet\n"
        "model = ResNet.build(32, 32, 3, 2, (1, 1), (8, 16, 32))\n"
        "predict.make_predictor(model, runtime='openvino')\n"
    )
    result = run_script("-c", code, env={"HOME": str(tmp_path)})
    assert result.returncode == 0, result.stderr[-2000:]
    assert not (tmp_path / "intel").exists()


def save_fast_model(folder: Path, stain: str = "none") -> Path:
    """A small calibrated model saved with its compiled network, as save_model.py saves."""
    keras.utils.set_random_seed(3)  # the same weights with and without the stain layer
    keras_model = build_model(2, image_size=(32, 32), stain=stain)
    # Non-trivial weights, so that two engines agreeing means something.
    rng = np.random.default_rng(3)
    keras_model.set_weights(
        [w + 0.05 * rng.standard_normal(w.shape).astype(w.dtype) for w in keras_model.get_weights()]
    )
    metadata = {
        "class_names": ["Parasitized", "Uninfected"],
        "preprocessing": RECIPE,
        "calibration": {"method": "temperature", "temperature": 1.7, "images": 40},
        **({"provenance": {"stain": stain}} if stain != "none" else {}),
    }
    path = folder / "fast.model"
    save_model(keras_model, path, metadata, compiled=True)
    return path


@pytest.fixture(scope="module")
def fast_model(tmp_path_factory) -> Path:
    return save_fast_model(tmp_path_factory.mktemp("fast"))


@pytest.fixture(scope="module")
def images(tmp_path_factory, real_images) -> Path:
    """Class folders of real NIH cells (with MALARIA_SOURCE) or synthetic images of odd sizes."""
    root = tmp_path_factory.mktemp("images")
    for number, name in enumerate(("Parasitized", "Uninfected")):
        (root / name).mkdir()
        if real_images is not None:
            for path in sorted((real_images / name).glob("*.png"))[:12]:
                shutil.copy(path, root / name / path.name)
        else:
            for i in range(6):
                write_image(root / name / f"{i}.png", size=(50 + 7 * i, 61), seed=10 * number + i)
    return root


def read_csv(path: Path) -> dict[str, tuple[str, np.ndarray]]:
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))[1:]
    return {row[0]: (row[1], np.asarray(row[2:], dtype=float)) for row in rows}


def classify(model: Path, images: Path, folder: Path, *options: str, blocked: bool = False):
    output = folder / f"rows{len(list(folder.glob('*.csv')))}.csv"
    script = without_tensorflow("load_model.py") if blocked else ("load_model.py",)
    result = run_script(
        *script, "-i", str(images), "-m", str(model), "-n", "0", "--seed", "1",
        "--csv", str(output), "-o", str(folder / "montage.png"), *options,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return result, read_csv(output)


def test_load_model_without_tensorflow_gives_the_keras_answers(fast_model, images, tmp_path):
    """In a process where importing TensorFlow, Keras or scikit-learn fails, load_model.py
    classifies on the stored network and writes the CSV the Keras path writes: the same
    labels, probabilities within 1e-5. (Mutation: an import of keras on the fast path,
    e.g. in describe(), or of sklearn in evaluation, fails the run.)"""
    fast, fast_rows = classify(fast_model, images, tmp_path, "--precision", "float32", blocked=True)
    assert "running on OpenVINO, f32" in fast.stdout
    slow, keras_rows = classify(fast_model, images, tmp_path, "--runtime", "tensorflow")
    assert "running on TensorFlow" in slow.stdout
    assert set(fast_rows) == set(keras_rows) and len(fast_rows) >= 12
    for path, (label, probabilities) in keras_rows.items():
        assert fast_rows[path][0] == label
        np.testing.assert_allclose(fast_rows[path][1], probabilities, rtol=0, atol=1e-5)
    # The calibrated probabilities, not the raw ones: the temperature is inside the IR.
    assert max(abs(p[1][0] - 0.5) for p in fast_rows.values()) < 0.5


def test_stain_normalisation_travels_in_the_compiled_network(images, tmp_path):
    """--stain grey-world is a layer of the network, so the fast path (OpenVINO, no
    TensorFlow) applies it as Keras does: the same labels, probabilities within 1e-5.
    (Mutation: GreyWorld's gain computed but not applied fails the last assertion.)"""
    model = save_fast_model(tmp_path, stain="grey-world")
    fast, fast_rows = classify(model, images, tmp_path, "--precision", "float32", blocked=True)
    assert "running on OpenVINO, f32" in fast.stdout
    assert "[INFO] stain normalisation: grey-world" in fast.stdout  # said, whichever engine
    _, keras_rows = classify(model, images, tmp_path, "--runtime", "tensorflow")
    (tmp_path / "plain").mkdir()
    plain = save_fast_model(tmp_path / "plain")
    plain_rows = classify(plain, images, tmp_path, "--runtime", "tensorflow")[1]
    assert set(fast_rows) == set(keras_rows) and len(fast_rows) >= 12
    for path, (label, probabilities) in keras_rows.items():
        assert fast_rows[path][0] == label
        np.testing.assert_allclose(fast_rows[path][1], probabilities, rtol=0, atol=1e-5)
    # The layer changes what the network sees: not the plain network's answers.
    differences = [abs(keras_rows[p][1][0] - plain_rows[p][1][0]) for p in keras_rows]
    assert max(differences) > 1e-4  # a random network barely looks at colour


def rewrite_member(source: Path, target: Path, name: str, change) -> None:
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w") as new:
        for info in old.infolist():
            data = old.read(info.filename)
            new.writestr(info, change(data) if info.filename == name else data)


@pytest.mark.parametrize(
    "member, change",
    [
        ("model.weights.h5", None),  # weights changed after the IR was built: stale
        (compiled.IR_BIN, lambda data: data[:-8] + bytes(8)),  # the IR's weights altered
        (compiled.MANIFEST, lambda data: b"{not json"),
        ("pyimagesearch.json", None),  # a new temperature: the IR's is stale
    ],
)
def test_a_stale_or_altered_network_is_never_used(fast_model, tmp_path, member, change):
    """Mutation: skipping the hash check in compiled.read_ir makes every case load the
    mismatched network."""
    if member == "model.weights.h5":
        other = build_model(2, image_size=(32, 32))
        save_model(other, tmp_path / "other.model", {"class_names": ["a", "b"],
                                                     "preprocessing": RECIPE})  # fmt: skip
        with zipfile.ZipFile(tmp_path / "other.model") as archive:
            replacement = archive.read("model.weights.h5")
        change = lambda data: replacement  # noqa: E731
    if member == "pyimagesearch.json":
        change = lambda data: data.replace(b'"temperature": 1.7', b'"temperature": 2.5')  # noqa: E731
    altered = tmp_path / "altered.model"
    rewrite_member(fast_model, altered, member, change)
    metadata = compiled.modelfile.read_metadata(altered)
    with pytest.raises(compiled.Stale):
        compiled.read_ir(altered, metadata)
    engine = predict.load_engine(str(altered), images=4)
    assert engine.model is not None and engine.description.startswith("TensorFlow")


def test_a_file_without_a_network_falls_back_to_keras_with_one_line(tmp_path, images):
    path = tmp_path / "plain.model"
    save_model(build_model(2, image_size=(32, 32)), path,
               {"class_names": ["Parasitized", "Uninfected"], "preprocessing": RECIPE})  # fmt: skip
    result, rows = classify(path, images, tmp_path)
    assert "saved without a compiled network; loading it with Keras" in result.stdout
    assert "running on TensorFlow" in result.stdout and len(rows) >= 12


def test_int8_keeps_the_labels_of_a_trained_model_on_real_images(
    trained_model, tutorial_dataset, tmp_path
):
    """python -m pyimagesearch.quantize adds an int8 network calibrated on training images;
    on the testing split its probabilities stay within 0.05 of float32's, so a label can
    change only where float32 itself was within 0.05 of the boundary. (Mutation: loading
    the float network for --precision int8 fails the 'running on' check; calibrating on
    pixels scaled to [0, 1], not the [0, 255] the network takes, fails the tolerance.)"""
    model = tmp_path / "int8.model"
    shutil.copy(trained_model, model)
    result = run_script("-m", "pyimagesearch.quantize", "-m", str(model), "-i",
                        str(tutorial_dataset / "training"), "--limit", "120")  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "calibrated on 120 images" in result.stdout
    testing = tutorial_dataset / "testing"
    int8_run, int8_rows = classify(model, testing, tmp_path, "--precision", "int8")
    assert "running on OpenVINO, int8" in int8_run.stdout
    _, float_rows = classify(model, testing, tmp_path, "--precision", "float32")
    assert set(int8_rows) == set(float_rows) and len(float_rows) == 100
    for path, (label, probabilities) in float_rows.items():
        assert np.abs(int8_rows[path][1] - probabilities).max() <= 0.05
        if np.abs(probabilities - 0.5).max() > 0.05:
            assert int8_rows[path][0] == label, path


def test_samples_0_montage_is_a_seeded_sample_not_the_first_16(fast_model, images, tmp_path: Path):
    """load_model.py -n 0 classifies every file but draws 16 of them chosen by --seed:
    on 24 files its montage is not the montage of the first 16 (all one class in a
    sorted folder), and another seed draws another one."""
    import cv2

    folder = tmp_path / "all"
    shutil.copytree(images, folder)
    for name in ("one", "two", "first16"):
        (tmp_path / name).mkdir()
    for number, name in enumerate(("Parasitized", "Uninfected")):  # 12 a class at least
        for i in range(12 - len(list((folder / name).iterdir()))):
            write_image(folder / name / f"z{i}.png", size=(55, 60 + i), seed=100 * number + i)
    _, rows = classify(fast_model, folder, tmp_path / "one")
    assert len(rows) == 24
    first = tmp_path / "first"  # the 16 files classified first, alone
    for path in list(rows)[:16]:
        relative = Path(path).relative_to(folder)
        (first / relative.parent).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, first / relative)
    classify(fast_model, first, tmp_path / "first16")
    classify(fast_model, folder, tmp_path / "two", "--seed", "2")
    seed_1, seed_2, first_16 = (
        cv2.imread(str(tmp_path / name / "montage.png")) for name in ("one", "two", "first16")
    )
    assert seed_1.shape == first_16.shape
    assert not np.array_equal(seed_1, first_16), "-n 0 drew the first 16 files"
    assert not np.array_equal(seed_1, seed_2), "--seed does not choose the montage's files"
