import numpy as np
from keras import layers

from pyimagesearch.resnet import ResNet
from pyimagesearch.training.train import build_model


def test_tutorial_resnet_has_the_documented_size():
    model = ResNet.build(64, 64, 3, 2, (2, 2, 3), (32, 64, 128, 256), reg=0.0005)
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert abs(model.count_params() - 295_000) < 2_000
    assert abs(trainable - 291_000) < 2_000
    assert model.input_shape == (None, 64, 64, 3)
    assert model.output_shape == (None, 2)


def test_weight_decay_is_placed_as_in_the_original():
    """The original passes ``reg`` to the stem conv and the Dense layer only; the residual
    modules (their three convolutions and the projection shortcuts) keep their default."""
    model = build_model(2)
    convs = [layer for layer in model.layers if isinstance(layer, layers.Conv2D)]
    dense = [layer for layer in model.layers if isinstance(layer, layers.Dense)]
    assert len(convs) == 25 and len(dense) == 1

    def l2_of(layer) -> float:
        return float(layer.kernel_regularizer.get_config()["l2"])

    stem, modules = convs[0], convs[1:]
    assert np.isclose(l2_of(stem), 0.0005)
    assert np.isclose(l2_of(dense[0]), 0.0005)
    assert all(np.isclose(l2_of(conv), 0.0001) for conv in modules)


def squares(count: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Noise with a bright square whose place (top left, middle, bottom right) is the class."""
    x = rng.random((count, 32, 32, 3), dtype="float32") * 0.3
    y = np.arange(count) % 3
    for image, label in zip(x, y, strict=True):
        corner = 4 + 10 * label
        image[corner : corner + 8, corner : corner + 8] += 0.7
    return x, y


def test_the_network_learns_to_tell_classes_apart():
    """What a user needs of ResNet.build: a network that learns. Three classes told apart
    only by where a square lies; after 48 steps the network classifies images it never
    saw, with one probability per class. (Mutation: the stem reading ``inputs * 0.0``
    instead of the image leaves it at chance, 1/3, and the test fails.)"""
    import keras

    rng = np.random.default_rng(0)
    (x, y), (unseen, truth) = squares(60, rng), squares(30, rng)
    keras.utils.set_random_seed(1)
    model = ResNet.build(32, 32, 3, 3, (1, 1, 1), (8, 16, 32, 64))
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy")
    model.fit(x, y, epochs=12, batch_size=15, verbose=0)
    out = model.predict(unseen, verbose=0)
    assert out.shape == (30, 3)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-5)
    assert (out.argmax(axis=1) == truth).mean() >= 0.9


def test_gap_head_takes_any_size_with_the_same_parameters(tmp_path):
    """--head gap: global average pooling, so the network has the same weights at 32, 64
    and 96 px (the tutorial head's Dense layer grows with the input), and the head is a
    layer of the config: a save and safe load gives the same network back."""
    from pyimagesearch.core.preprocessing import default_recipe
    from pyimagesearch.training.serialization import load_model, save_model

    gap = {size: build_model(2, (size, size), head="gap") for size in (32, 64, 96)}
    assert len({model.count_params() for model in gap.values()}) == 1
    assert gap[64].count_params() < build_model(2, (64, 64)).count_params()
    assert build_model(2, (96, 96)).count_params() > build_model(2, (64, 64)).count_params()
    out = gap[96].predict(np.zeros((2, 96, 96, 3), "float32"), verbose=0)
    assert out.shape == (2, 2)

    metadata = {"class_names": ["a", "b"], "preprocessing": default_recipe((96, 96))}
    path = tmp_path / "gap.model"
    save_model(gap[96], path, metadata)
    loaded, _ = load_model(path)
    assert [type(layer).__name__ for layer in loaded.layers[-4:]] == [
        "Activation", "GlobalAveragePooling2D", "Dense", "Activation",
    ]  # fmt: skip
    ones = np.ones((1, 96, 96, 3), "float32")
    expected = gap[96].predict(ones, verbose=0)
    np.testing.assert_allclose(loaded.predict(ones, verbose=0), expected, atol=1e-6)


def test_default_head_is_the_tutorials():
    """The default network is the article's, layer for layer: 8x8 average pooling, Flatten,
    and exactly the parameters it had before --head existed (whose configuration and
    seeded initial weights were checked equal to this one's when --head was added)."""
    article = ResNet.build(64, 64, 3, 2, (2, 2, 3), (32, 64, 128, 256), reg=0.0005)
    for default in (build_model(2), article):
        kinds = [type(layer).__name__ for layer in default.layers[-5:]]
        assert kinds == ["Activation", "AveragePooling2D", "Flatten", "Dense", "Activation"]
        assert default.count_params() == 294_638
        assert default.layers[-3].output.shape[-1] == 1024  # 2 x 2 x 256 at 64 px
