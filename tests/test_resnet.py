import numpy as np
from keras import layers

from pyimagesearch.resnet import ResNet
from pyimagesearch.train import build_model


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


def test_outputs_are_probabilities():
    model = ResNet.build(64, 64, 3, 3, (1, 1, 1), (8, 16, 32, 64))
    out = model.predict(np.random.default_rng(0).random((4, 64, 64, 3), dtype="float32"), verbose=0)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-5)
