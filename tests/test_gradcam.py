"""Grad-CAM: maps of the right shape and range, per image, of the chosen class; on real
parasitized cells a classifying model's heat lies on the stained parasite; load_model.py
--explain and --explain-dir."""

from pathlib import Path

import cv2
import keras
import numpy as np
import pytest

from pyimagesearch.core.preprocessing import default_recipe, load_image
from pyimagesearch.inference import gradcam
from pyimagesearch.training.train import build_model
from tests.conftest import TrainedRun, run_script, write_image

SIZE = (32, 32)


@pytest.fixture(scope="module")
def small_model() -> keras.Model:
    keras.utils.set_random_seed(3)
    return build_model(2, SIZE)


def test_last_conv_layer_is_the_activated_last_block(small_model: keras.Model):
    layer = gradcam.last_conv_layer(small_model)
    following = small_model.layers[small_model.layers.index(layer) + 1]
    assert isinstance(layer, keras.layers.Activation) and layer.output.shape[1:3] == (8, 8)
    assert isinstance(following, keras.layers.AveragePooling2D)


def test_heatmaps_have_the_input_size_and_lie_in_0_1(small_model: keras.Model):
    images = np.random.default_rng(0).uniform(0, 1, (5, *SIZE, 3)).astype("float32")
    maps = gradcam.heatmaps(small_model, images)
    assert maps.shape == (5, *SIZE) and maps.dtype == np.float32
    assert maps.min() >= 0 and maps.max() <= 1
    for heat in maps:  # each map is normalised on its own: peak 1 (or all zero)
        assert heat.max() == pytest.approx(1.0) or not heat.any()


def test_each_image_is_explained_alone_and_for_the_class_asked(small_model: keras.Model):
    images = np.random.default_rng(1).uniform(0, 1, (4, *SIZE, 3)).astype("float32")
    together = gradcam.heatmaps(small_model, images, [0, 0, 1, 1])
    alone = np.stack(
        [
            gradcam.heatmaps(small_model, images[i : i + 1], [c])[0]
            for i, c in enumerate([0, 0, 1, 1])
        ]
    )
    np.testing.assert_allclose(together, alone, atol=1e-5)
    other = gradcam.heatmaps(small_model, images, [1, 1, 0, 0])
    assert not np.allclose(together, other, atol=1e-3)


def test_by_default_each_image_is_explained_for_its_own_predicted_class(small_model):
    """Without class indices, each map is that of the class predicted for its image: with
    predictions of both classes in one batch, neither fixed class gives the default."""
    images = np.random.default_rng(2).normal(0, 3, (8, *SIZE, 3)).astype("float32")
    model = keras.models.clone_model(small_model)
    model.set_weights(small_model.get_weights())
    # The untrained model says class 0 for every image: move the last Dense layer's
    # bias to the median image's logit gap, so that half the batch is predicted class 1.
    dense = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)][-1]
    kernel, bias = dense.get_weights()
    before = model.predict(images, verbose=0)
    bias[0] -= np.median(np.log(before[:, 0] / before[:, 1]))
    dense.set_weights([kernel, bias])
    predicted = model.predict(images, verbose=0).argmax(axis=1)
    assert sorted(np.bincount(predicted, minlength=2)) == [4, 4]
    default = gradcam.heatmaps(model, images)
    np.testing.assert_allclose(default, gradcam.heatmaps(model, images, predicted), atol=1e-5)
    for fixed in (0, 1):
        assert not np.allclose(default, gradcam.heatmaps(model, images, [fixed] * 8), atol=1e-3)


def test_explain_files_reads_through_the_one_preprocessing_and_skips_broken_files(
    small_model: keras.Model, tmp_path: Path
):
    recipe = default_recipe(SIZE)
    good = [str(write_image(tmp_path / f"{i}.png", size=(50, 40), seed=i)) for i in range(3)]
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    paths = [good[0], str(broken), good[1], good[2]]
    found = dict(gradcam.iter_heatmaps(small_model, paths, recipe))
    assert sorted(found) == [0, 2, 3]
    direct = np.stack([load_image(p, recipe) for p in good])
    np.testing.assert_allclose(
        np.stack([found[0], found[2], found[3]]), gradcam.heatmaps(small_model, direct), atol=1e-5
    )


def test_overlay_colours_hot_red_and_cold_blue():
    tile = np.full((128, 128, 3), 128, dtype="uint8")
    heat = np.zeros((32, 32), dtype="float32")
    heat[:16] = 1.0  # top half hot
    shown = gradcam.overlay(tile, heat)
    assert shown.shape == tile.shape and shown.dtype == np.uint8
    blue, red = 0, 2  # BGR
    assert shown[10, 64, red] > shown[10, 64, blue]
    assert shown[120, 64, blue] > shown[120, 64, red]


# --- real cells -------------------------------------------------------------------------

# Two epochs (the ``trained_run`` fixture) leave the network at 0.66 test accuracy: it has
# not yet found the parasite, and its heat is barely on the stain (0.09 above the rest of
# the cell, on 37 of 50 cells). The stable recipe's 12 epochs classify well (0.98, heat
# 0.52 above); 8 epochs (seed 1) is the shortest run tried that does (0.85, 48 of 50
# parasitized test cells right, heat 0.44 above on 49 of 50). At 48 px (0.6x the time)
# seed 3 calls the 12 cells here right, with 0.40 more heat on the stain on all 12; seed 1
# only just passes there. docs/audit.md has both tables. Those 8 epochs were measured on
# an AMD EPYC; on a Xeon the same command called 10 of the 12 right, so the fixture trains
# 12 epochs (on the Xeon: 0.98 test accuracy, 12 of 12, heat 0.27 above on all 12).
CLASSIFIER_ARGS = ("--recipe", "stable", "--image-size", "48", "--epochs", "12", "--seed", "3")
STAINED_SHARE = 0.02  # the darkest 2% of the cell's pixels: the purple parasite


def stained_region(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(darkest-stained pixels, the rest of the cell) of a model input in [0, 1].

    Outside the cell the slide is black; darkness is measured inside the cell only, away
    from its rim (eroded by 2 pixels), where the fade to black would read as dark stain."""
    cell = (image.max(axis=-1) > 0.1).astype("uint8")
    inner = cv2.erode(cell, np.ones((5, 5), np.uint8)).astype(bool)
    darkness = 1 - image.mean(axis=-1)
    stained = inner & (darkness >= np.quantile(darkness[inner], 1 - STAINED_SHARE))
    return stained, cell.astype(bool) & ~stained


@pytest.fixture(scope="module")
def classifier(tutorial_dataset: Path, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("gradcam") / "classifier.keras"
    result = run_script(
        "save_model.py", "--dataset", str(tutorial_dataset), "--model", str(path),
        "--plot", str(path.with_suffix(".png")), *CLASSIFIER_ARGS,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return path


def test_heat_of_real_parasitized_cells_lies_on_the_stain(classifier: Path, tutorial_dataset: Path):
    from pyimagesearch.training.serialization import load_model

    model, metadata = load_model(classifier)
    recipe = metadata["preprocessing"]
    parasitized = metadata["class_names"].index("Parasitized")
    paths = sorted((tutorial_dataset / "testing" / "Parasitized").iterdir())[:12]
    images = np.stack([load_image(str(p), recipe) for p in paths])
    # The model must classify these cells, or where it looks says nothing.
    assert (model.predict(images, verbose=0).argmax(axis=1) == parasitized).mean() >= 0.9
    maps = gradcam.heatmaps(model, images, [parasitized] * len(images))
    inside, outside = [], []
    for image, heat in zip(images, maps, strict=True):
        stained, rest = stained_region(image)
        inside.append(heat[stained].mean())
        outside.append(heat[rest].mean())
    inside, outside = np.array(inside), np.array(outside)
    assert np.mean(inside > outside) >= 0.9, (inside, outside)
    assert inside.mean() > outside.mean() + 0.2, (inside.mean(), outside.mean())


def test_load_model_explain_draws_and_saves_overlays(
    trained_run: TrainedRun, tutorial_dataset: Path, tmp_path: Path
):
    import load_model
    from pyimagesearch.core.errors import run_command

    common = ["load_model.py", "-i", str(tutorial_dataset / "testing"), "-m",
              str(trained_run.model_path), "-n", "5", "--seed", "2"]  # fmt: skip
    plain = run_script(*common, "-o", str(tmp_path / "plain.png"))
    assert plain.returncode == 0, plain.stderr[-3000:]
    folder = tmp_path / "heat"
    explained = run_script(*common, "-o", str(tmp_path / "heat.png"), "--explain-dir", str(folder))
    assert explained.returncode == 0, explained.stderr[-3000:]
    assert "[INFO] 5 Grad-CAM overlays written" in explained.stdout
    saved = sorted(p for p in folder.iterdir() if p.suffix == ".png")
    assert len(saved) == 5 and all(cv2.imread(str(p)).shape == (128, 128, 3) for p in saved)
    before, after = cv2.imread(str(tmp_path / "plain.png")), cv2.imread(str(tmp_path / "heat.png"))
    assert before.shape == after.shape
    tile = (slice(40, 128), slice(0, 128))  # below the label text of the first tile
    assert np.abs(before[tile].astype(int) - after[tile].astype(int)).mean() > 10

    # Run again (in this process: a TensorFlow start-up less): an earlier --explain-dir is
    # replaced; a folder of someone's files is not.
    again = [*common[1:], "-o", str(tmp_path / "heat.png"), "--explain-dir", str(folder)]
    assert run_command(load_model.main, again) == 0
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "notes.txt").write_text("mine")
    refused = run_script(*common, "-o", str(tmp_path / "x.png"), "--explain-dir", str(theirs))
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert "was not written by this tool" in refused.stderr
    assert (theirs / "notes.txt").read_text() == "mine" and not (tmp_path / "x.png").exists()


def test_a_model_without_its_own_convolutions_is_refused_in_one_line():
    """An ensemble file (crossval --ensemble) nests its members: --explain must say so,
    not explain the input pixels. Mutation: dropping the InputLayer skip in
    last_conv_layer returns the input and fails this."""
    from pyimagesearch.core.errors import UserError

    inputs = keras.Input((8, 8, 3))
    member = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Flatten(),
                               keras.layers.Dense(2, activation="softmax")])  # fmt: skip
    nested = keras.Model(inputs, keras.layers.Average()([member(inputs), member(inputs)]))
    with pytest.raises(UserError, match="explain one member"):
        gradcam.last_conv_layer(nested)
