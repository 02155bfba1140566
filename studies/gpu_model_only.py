"""Seconds per epoch of the tutorial run on a GPU, model only, on any Keras 3 backend.

    KERAS_BACKEND=jax python -m studies.gpu_model_only

For GPU machines without TensorFlow (the project's input pipeline needs it): the
same ResNet, optimizer and schedule, fed the tutorial's 360 training images' worth
of random 64x64 inputs, with the augmentation layers inside the step, timed per
epoch after a warm-up epoch, in float32 and in each mixed precision.
"""

from __future__ import annotations

import json
import sys
import time

import keras
import numpy as np

from pyimagesearch.network.augmentation import build_augmenter
from pyimagesearch.resnet import ResNet

TRAIN_IMAGES, BATCH, EPOCHS = 360, 32, 25


def seconds_per_epoch(policy: str) -> dict:
    keras.mixed_precision.set_global_policy(policy)
    keras.utils.set_random_seed(1)
    network = ResNet.build(64, 64, 3, 2, (2, 2, 3), (32, 64, 128, 256), reg=0.0005)
    inputs = keras.Input((64, 64, 3))
    model = keras.Model(inputs, network(build_augmenter(1)(inputs)))
    schedule = keras.optimizers.schedules.InverseTimeDecay(0.1, 1, 0.1 / EPOCHS)
    model.compile(
        optimizer=keras.optimizers.SGD(schedule, momentum=0.9),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    rng = np.random.default_rng(0)
    x = rng.random((TRAIN_IMAGES, 64, 64, 3), dtype="float32")
    y = rng.integers(0, 2, TRAIN_IMAGES)
    model.fit(x, y, batch_size=BATCH, epochs=1, verbose=0)  # compile and warm up
    start = time.perf_counter()
    model.fit(x, y, batch_size=BATCH, epochs=EPOCHS, verbose=0)
    elapsed = time.perf_counter() - start
    return {
        "policy": policy,
        "seconds_per_epoch": round(elapsed / EPOCHS, 4),
        "images_per_second": round(EPOCHS * TRAIN_IMAGES / elapsed, 1),
    }


def main() -> int:
    print(f"[INFO] Keras {keras.__version__}, backend {keras.backend.backend()}")
    for policy in ("float32", "mixed_float16", "mixed_bfloat16"):
        print(json.dumps(seconds_per_epoch(policy)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
