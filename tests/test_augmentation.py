"""The two augmentations: the tutorial's keeps cells roughly upright, the full recipe's does not."""

import numpy as np

from pyimagesearch.network.augmentation import build_augmenter


def upside_down_share(kind: str) -> float:
    images = np.zeros((256, 64, 64, 3), dtype="float32")
    images[:, :32] = 1.0  # bright top half
    out = np.asarray(build_augmenter(seed=11, kind=kind)(images, training=True))
    return float(np.mean(out[:, :32].mean(axis=(1, 2, 3)) < out[:, 32:].mean(axis=(1, 2, 3))))


def test_tutorial_augmentation_never_turns_a_cell_over():
    assert upside_down_share("tutorial") == 0.0


def test_full_recipe_augmentation_turns_cells_any_way():
    assert 0.3 < upside_down_share("any-orientation") < 0.7


def test_none_and_flip_do_only_what_they_say():
    """For images with a left and a right, or no symmetry at all (digits, text), a user
    picks --augmentation none (the images as they are) or flip (each image as it is or
    mirrored left to right, nothing else: never turned or moved). (Mutations: "flip"
    with "horizontal_and_vertical", or "none" given the tutorial's layers, fails.)"""
    assert build_augmenter(seed=1, kind="none") is None
    rng = np.random.default_rng(0)
    images = rng.random((64, 32, 32, 3), dtype="float32")
    out = np.asarray(build_augmenter(seed=1, kind="flip")(images, training=True))
    same = [np.allclose(o, i) for o, i in zip(out, images, strict=True)]
    mirrored = [np.allclose(o, i[:, ::-1]) for o, i in zip(out, images, strict=True)]
    assert all(s or m for s, m in zip(same, mirrored, strict=True))
    assert 10 < sum(mirrored) < 54  # about half mirrored, so it is not a no-op


def disc_images(count: int = 64) -> np.ndarray:
    """COUNT copies of a pink 'cell' with a purple 'parasite' on the black background
    of every NIH crop (pixels in [0, 1], as the training pipeline holds them)."""
    images = np.zeros((count, 32, 32, 3), dtype="float32")
    rows, cols = np.mgrid[:32, :32]
    images[:, (rows - 16) ** 2 + (cols - 16) ** 2 < 100] = (0.85, 0.55, 0.65)
    images[:, (rows - 14) ** 2 + (cols - 18) ** 2 < 6] = (0.45, 0.2, 0.55)
    return images


def chromaticity(images: np.ndarray) -> np.ndarray:
    """Each image's share of red, green and blue in its cell: geometry cannot move it
    (black mixed in by a resample scales all three alike), colour does."""
    totals = images.sum(axis=(1, 2))
    return totals / totals.sum(axis=1, keepdims=True)


def test_colour_augmentation_varies_the_stain_of_each_image():
    images = disc_images()
    plain = np.asarray(build_augmenter(seed=3, kind="tutorial")(images, training=True))
    coloured = np.asarray(build_augmenter(seed=3, kind="tutorial+colour")(images, training=True))
    assert chromaticity(plain).std(axis=0).max() < 1e-3  # geometry alone keeps the stain
    spread = chromaticity(coloured).std(axis=0).max()
    assert spread > 0.01, f"the colour augmentation left the stain as it was ({spread:.4f})"
    # The black background stays black: hue and saturation never lift it.
    assert np.abs(coloured[:, :2, :2]).max() < 1e-6


def test_colour_augmentation_is_for_training_only():
    images = disc_images(8)
    augmenter = build_augmenter(seed=3, kind="tutorial+colour")
    assert np.array_equal(np.asarray(augmenter(images, training=False)), images)


def test_a_colour_trained_model_classifies_with_the_plain_preprocessing(
    synthetic_dataset, tmp_path, monkeypatch
):
    """Validation and testing were fed the decoded images untouched, the saved model holds
    no random layer, and its preprocessing is the one every other model has."""
    from pyimagesearch.core.preprocessing import default_recipe
    from pyimagesearch.training.serialization import load_model
    from tests.conftest import train_in_process

    model_path = tmp_path / "colour.keras"
    argv = ["--dataset", str(synthetic_dataset), "--model", str(model_path), "--plot",
            str(tmp_path / "plot.png"), "--epochs", "1", "--image-size", "32", "--seed", "1",
            "--augmentation", "tutorial+colour"]  # fmt: skip
    run = train_in_process(argv, monkeypatch)
    for split in ("validation", "testing"):
        images = run.decoded[split][0]
        assert any(source is images for source, _ in run.fed), f"{split} went through an augmenter"
        assert np.array_equal(run.fed_to_model(split), images), split
    model, metadata = load_model(model_path)
    assert not [layer for layer in model.layers if type(layer).__name__.startswith("Random")]
    assert metadata["preprocessing"] == default_recipe((32, 32))
    assert metadata["provenance"]["augmentation"] == "tutorial+colour"
