import numpy as np

from pyimagesearch.resnet import ResNet


def test_tutorial_resnet_has_the_documented_size():
    model = ResNet.build(64, 64, 3, 2, (2, 2, 3), (32, 64, 128, 256), reg=0.0005)
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert abs(model.count_params() - 295_000) < 2_000
    assert abs(trainable - 291_000) < 2_000
    assert model.input_shape == (None, 64, 64, 3)
    assert model.output_shape == (None, 2)


def test_outputs_are_probabilities():
    model = ResNet.build(64, 64, 3, 3, (1, 1, 1), (8, 16, 32, 64))
    out = model.predict(np.random.default_rng(0).random((4, 64, 64, 3), dtype="float32"), verbose=0)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-5)
