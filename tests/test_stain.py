"""--stain grey-world: a cell's colour cast taken out by a layer of the network."""

import numpy as np
import pytest

from pyimagesearch.core.preprocessing import default_recipe
from pyimagesearch.network.stain import GreyWorld
from pyimagesearch.training.serialization import load_model, save_model
from pyimagesearch.training.train import build_model


def cell(size: int = 32, seed: int = 0) -> np.ndarray:
    """A pink disc with a darker purple spot on black, in [0, 1]: a stained cell."""
    y, x = np.mgrid[:size, :size]
    image = np.zeros((size, size, 3), "float32")
    image[(y - size / 2) ** 2 + (x - size / 2) ** 2 < (size / 2.5) ** 2] = (0.85, 0.55, 0.65)
    image[(y - size / 3) ** 2 + (x - size / 2.2) ** 2 < (size / 10) ** 2] = (0.45, 0.2, 0.5)
    noise = np.random.default_rng(seed).uniform(0, 0.02, image.shape).astype("float32")
    return image + noise * (image > 0)


def test_the_same_cell_under_another_stain_looks_the_same():
    """Slides stain the same cell bluer or redder: after the layer the two are one image
    (up to brightness, which the layer keeps), the cell averages to grey at its own
    brightness, the background stays black, and the parasite's spot still stands out.
    (Mutation: gains of 1, or the gain taken against the brightest channel instead of the
    mean of the three, fails it.)"""
    pink = cell()
    casts = [pink * np.float32([0.7, 1.0, 1.25]), pink * np.float32([1.2, 0.9, 0.8])]
    out = np.asarray(GreyWorld()(np.stack([pink, *casts])))
    for other in out[1:]:
        np.testing.assert_allclose(other / other.mean(), out[0] / out[0].mean(), atol=1e-5)
    means = out[0].mean(axis=(0, 1))
    np.testing.assert_allclose(means, means.mean(), rtol=1e-5)
    np.testing.assert_allclose(means.mean(), pink.mean(), rtol=1e-5)  # brightness kept
    assert np.all(out[0][pink.max(axis=-1) == 0] == 0)
    spot, rest = out[0][10, 14], out[0][16, 16]
    assert spot.sum() < 0.8 * rest.sum()


def test_black_or_one_colour_images_give_finite_bounded_pixels():
    """An all-black image stays black, and a channel the image lacks is not blown up
    beyond the bound. (Mutation: no guard on the divisor gives NaN for the black image.)"""
    black = np.zeros((32, 32, 3), "float32")
    red = np.zeros((32, 32, 3), "float32")
    red[..., 0], red[..., 1] = 0.9, 0.001
    out = np.asarray(GreyWorld()(np.stack([black, red])))
    assert np.all(np.isfinite(out))
    assert np.all(out[0] == 0)
    assert out[1][..., 1].max() <= 0.001 * 4.0 + 1e-6


@pytest.mark.parametrize("stain", ["none", "grey-world"])
def test_the_layer_is_part_of_the_saved_network(tmp_path, stain):
    """Saved and safely loaded, the network still begins with the stain layer (or not),
    and answers as before: a loader cannot forget it. (Mutation: unregistering GreyWorld
    makes the safe load refuse the file.)"""
    model = build_model(2, (32, 32), stain=stain)
    path = tmp_path / "stain.model"
    save_model(model, path, {"class_names": ["a", "b"], "preprocessing": default_recipe((32, 32))})
    loaded, _ = load_model(path)
    assert (type(loaded.layers[1]).__name__ == "GreyWorld") == (stain == "grey-world")
    images = np.stack([cell(seed=1), cell(seed=2) * np.float32([0.8, 1, 1.2])])
    np.testing.assert_allclose(
        loaded.predict(images, verbose=0), model.predict(images, verbose=0), atol=1e-6
    )
