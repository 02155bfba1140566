"""The small pre-activation bottleneck ResNet of the tutorial, on Keras 3.

Two heads: ``tutorial`` (the article's ``AveragePooling2D((8, 8))`` + ``Flatten``, whose
Dense layer grows with the input: 1,024 features at 64 px, 2,304 at 96 px) and ``gap``
(global average pooling: 256 features at any size, so larger inputs cost no parameters).
"""

from __future__ import annotations

import keras
from keras import layers
from keras.regularizers import l2

from pyimagesearch.core.recipes import HEADS, STAIN_NORMALIZATIONS
from pyimagesearch.network.stain import GreyWorld


class ResNet:
    @staticmethod
    def residual_module(
        data,
        K: int,
        stride: int,
        chanDim: int,
        red: bool = False,
        reg: float = 0.0001,
        bnEps: float = 2e-5,
        bnMom: float = 0.9,
        batch_norm: type[layers.Layer] = layers.BatchNormalization,
    ):
        """BN-ReLU-conv bottleneck (1x1 -> 3x3 -> 1x1) with an identity or projected shortcut."""
        shortcut = data

        bn1 = batch_norm(axis=chanDim, epsilon=bnEps, momentum=bnMom)(data)
        act1 = layers.Activation("relu")(bn1)
        conv1 = layers.Conv2D(int(K * 0.25), (1, 1), use_bias=False, kernel_regularizer=l2(reg))(
            act1
        )

        bn2 = batch_norm(axis=chanDim, epsilon=bnEps, momentum=bnMom)(conv1)
        act2 = layers.Activation("relu")(bn2)
        conv2 = layers.Conv2D(
            int(K * 0.25),
            (3, 3),
            strides=stride,
            padding="same",
            use_bias=False,
            kernel_regularizer=l2(reg),
        )(act2)

        bn3 = batch_norm(axis=chanDim, epsilon=bnEps, momentum=bnMom)(conv2)
        act3 = layers.Activation("relu")(bn3)
        conv3 = layers.Conv2D(K, (1, 1), use_bias=False, kernel_regularizer=l2(reg))(act3)

        # The projection sees the first pre-activation, as in the original recipe.
        if red:
            shortcut = layers.Conv2D(
                K, (1, 1), strides=stride, use_bias=False, kernel_regularizer=l2(reg)
            )(act1)

        return layers.add([conv3, shortcut])

    @staticmethod
    def build(
        width: int,
        height: int,
        depth: int,
        classes: int,
        stages: tuple[int, ...],
        filters: tuple[int, ...],
        reg: float = 0.0001,
        bnEps: float = 2e-5,
        bnMom: float = 0.9,
        batch_norm: type[layers.Layer] = layers.BatchNormalization,
        head: str = "tutorial",
        stain: str = "none",
    ) -> keras.Model:
        """Build the network for channels-last `height x width x depth` inputs.

        ``batch_norm`` lets training swap in a faster, weight-compatible layer; ``head``
        is one of HEADS; ``stain`` one of STAIN_NORMALIZATIONS ("grey-world" puts
        ``stain.GreyWorld`` before the first layer). Both are layers of the saved config,
        so loading needs no flag."""
        if head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}, got {head!r}")
        if stain not in STAIN_NORMALIZATIONS:
            raise ValueError(f"stain must be one of {STAIN_NORMALIZATIONS}, got {stain!r}")
        chanDim = -1
        inputs = keras.Input(shape=(height, width, depth), name="image")

        x = GreyWorld(name="stain")(inputs) if stain == "grey-world" else inputs
        x = batch_norm(axis=chanDim, epsilon=bnEps, momentum=bnMom)(x)
        x = layers.Conv2D(
            filters[0], (3, 3), use_bias=False, padding="same", kernel_regularizer=l2(reg)
        )(x)

        # As in the original, ``reg`` is not passed on: the residual modules keep their
        # own default L2 (0.0001); only the stem convolution and the classifier get ``reg``.
        for i, stage_depth in enumerate(stages):
            stride = 1 if i == 0 else 2
            x = ResNet.residual_module(
                x,
                filters[i + 1],
                stride,
                chanDim,
                red=True,
                bnEps=bnEps,
                bnMom=bnMom,
                batch_norm=batch_norm,
            )
            for _ in range(stage_depth - 1):
                x = ResNet.residual_module(
                    x, filters[i + 1], 1, chanDim, bnEps=bnEps, bnMom=bnMom, batch_norm=batch_norm
                )

        x = batch_norm(axis=chanDim, epsilon=bnEps, momentum=bnMom)(x)
        x = layers.Activation("relu")(x)
        if head == "gap":
            x = layers.GlobalAveragePooling2D()(x)
        else:
            x = layers.AveragePooling2D((8, 8))(x)
            x = layers.Flatten()(x)
        x = layers.Dense(classes, kernel_regularizer=l2(reg))(x)
        # float32 softmax keeps probabilities exact under a mixed-precision policy.
        outputs = layers.Activation("softmax", dtype="float32", name="probabilities")(x)

        return keras.Model(inputs, outputs, name="resnet")
