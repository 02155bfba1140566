"""The legacy reference: the tutorial's ResNet, generators and per-image loop on tf_keras.

    python -m bench.legacy train --dataset DIR --model legacy.h5 [--epochs 25] [--seed 42]
                                 [--predict DIR --predictions FILE.json]
    python -m bench.legacy predict --images DIR [--model legacy.h5] [--samples 0] [--seed 42]

``train`` is the Keras 2 recipe: ``ImageDataGenerator`` re-reading and augmenting the
PNGs every epoch, ``steps_per_epoch = N // batch size`` as the tutorial had it,
legacy SGD with ``decay``, ``fit`` then a test-set evaluation; it saves the model as
HDF5 whatever its name, as the article's Keras did (``saved_model.model``).
``--predict DIR`` then classifies DIR's class folders as the article's own training
pipeline sees them (``ImageDataGenerator(rescale=1/255).flow_from_directory(...,
shuffle=False)`` + ``model.predict``) and writes each file's probabilities to
``--predictions``: the reference a model file from elsewhere is judged against.
``predict`` is the tutorial's loader loop: ``cv2.imread``, BGR converted to RGB,
resized, one ``model.predict`` call per image. Without ``--model`` it uses an untrained
network of the same architecture. Each command prints one ``BENCH_JSON`` line with its
own timings and the work it actually did (steps and batch size).
"""

from __future__ import annotations

import argparse
import os
import random
import time
from typing import Any

from bench.instrument import emit, epoch_timer

SIZE = 64
BATCH_SIZE = 32
LEARNING_RATE = 0.1
EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")


def build_resnet(
    width: int = SIZE,
    height: int = SIZE,
    depth: int = 3,
    classes: int = 2,
    stages: tuple[int, ...] = (2, 2, 3),
    filters: tuple[int, ...] = (32, 64, 128, 256),
    reg: float = 0.0005,
) -> Any:
    """The pre-activation bottleneck ResNet of the tutorial, on tf_keras.

    As in the original, ``reg`` goes to the stem convolution and the Dense layer only;
    the residual modules use their own default L2 of 0.0001."""
    import tf_keras as keras
    from tf_keras import layers
    from tf_keras.regularizers import l2

    def bn_relu(x: Any) -> Any:
        x = layers.BatchNormalization(axis=-1, epsilon=2e-5, momentum=0.9)(x)
        return layers.Activation("relu")(x)

    def conv(x: Any, k: int, size: int, stride: int = 1, decay: float = 0.0001) -> Any:
        return layers.Conv2D(
            k, size, strides=stride, padding="same", use_bias=False, kernel_regularizer=l2(decay)
        )(x)

    def module(x: Any, k: int, stride: int, red: bool) -> Any:
        act1 = bn_relu(x)
        out = conv(act1, k // 4, 1)
        out = conv(bn_relu(out), k // 4, 3, stride)
        out = conv(bn_relu(out), k, 1)
        shortcut = conv(act1, k, 1, stride) if red else x
        return layers.add([out, shortcut])

    inputs = keras.Input(shape=(height, width, depth))
    x = layers.BatchNormalization(axis=-1, epsilon=2e-5, momentum=0.9)(inputs)
    x = conv(x, filters[0], 3, decay=reg)
    for i, stage in enumerate(stages):
        x = module(x, filters[i + 1], 1 if i == 0 else 2, red=True)
        for _ in range(stage - 1):
            x = module(x, filters[i + 1], 1, red=False)
    x = layers.AveragePooling2D((8, 8))(bn_relu(x))
    x = layers.Dense(classes, kernel_regularizer=l2(reg))(layers.Flatten()(x))
    return keras.Model(inputs, layers.Activation("softmax")(x), name="resnet")


def article_predictions(model: Any, folder: str) -> dict:
    """FOLDER's images through the article's generator, unshuffled, and model.predict."""
    from tf_keras.preprocessing.image import ImageDataGenerator

    flow = ImageDataGenerator(rescale=1 / 255.0).flow_from_directory(
        folder, target_size=(SIZE, SIZE), color_mode="rgb", shuffle=False, batch_size=BATCH_SIZE
    )
    probabilities = model.predict(flow, verbose=0)
    return {
        "files": [os.path.join(folder, name) for name in flow.filenames],
        "classes": sorted(flow.class_indices, key=flow.class_indices.get),
        "probabilities": probabilities.tolist(),
    }


def train(
    dataset: str,
    model_path: str,
    epochs: int,
    seed: int,
    predict_dir: str | None = None,
    predictions_file: str | None = None,
) -> None:
    import numpy as np
    import tf_keras as keras
    from tf_keras.preprocessing.image import ImageDataGenerator

    keras.utils.set_random_seed(seed)
    train_aug = ImageDataGenerator(
        rescale=1 / 255.0,
        rotation_range=20,
        zoom_range=0.05,
        width_shift_range=0.05,
        height_shift_range=0.05,
        shear_range=0.05,
        horizontal_flip=True,
        fill_mode="nearest",
    )
    plain = ImageDataGenerator(rescale=1 / 255.0)

    def flow(generator: Any, split: str, shuffle: bool) -> Any:
        return generator.flow_from_directory(
            os.path.join(dataset, split),
            class_mode="categorical",
            target_size=(SIZE, SIZE),
            color_mode="rgb",
            shuffle=shuffle,
            batch_size=BATCH_SIZE,
            seed=seed,
        )

    train_gen = flow(train_aug, "training", True)
    val_gen = flow(plain, "validation", False)
    test_gen = flow(plain, "testing", False)

    model = build_resnet(classes=train_gen.num_classes)
    optimizer = keras.optimizers.legacy.SGD(
        learning_rate=LEARNING_RATE, momentum=0.9, decay=LEARNING_RATE / epochs
    )
    model.compile(loss="categorical_crossentropy", optimizer=optimizer, metrics=["accuracy"])
    timer = epoch_timer(keras.callbacks.Callback)
    steps = train_gen.samples // BATCH_SIZE
    start = time.perf_counter()
    model.fit(
        train_gen,
        steps_per_epoch=steps,
        validation_data=val_gen,
        epochs=epochs,
        callbacks=[timer],
        verbose=2,
    )
    fit_s = time.perf_counter() - start

    predictions = model.predict(test_gen, verbose=0).argmax(axis=1)
    accuracy = float(np.mean(predictions == test_gen.classes))
    print(f"[INFO] test accuracy {accuracy:.4f}")
    model.save(model_path, save_format="h5")  # HDF5 whatever the name, as Keras 2.2 did
    if predict_dir:
        import json

        with open(predictions_file, "w") as handle:
            json.dump(article_predictions(model, predict_dir), handle)
    emit(
        {
            "fit_s": fit_s,
            "epoch_train_s": timer.train_s,
            "epoch_steps": timer.steps,
            "batch_size": BATCH_SIZE,
            "test_accuracy": accuracy,
        }
    )


def list_images(folder: str) -> list[str]:
    found = []
    for root, dirs, files in os.walk(folder, followlinks=True):
        dirs.sort()
        found.extend(os.path.join(root, f) for f in sorted(files) if f.lower().endswith(EXTENSIONS))
    return found


def predict(
    images: str, model_path: str | None, samples: int, seed: int, batch_size: int = 1
) -> None:
    import cv2
    import numpy as np
    import tf_keras as keras

    paths = list_images(images)
    if 0 < samples < len(paths):
        paths = random.Random(seed).sample(paths, samples)
    start = time.perf_counter()
    model = keras.models.load_model(model_path) if model_path else build_resnet()
    load_s = time.perf_counter() - start

    def load(path: str) -> Any:
        image = cv2.cvtColor(cv2.imread(path), cv2.COLOR_BGR2RGB)
        return cv2.resize(image, (SIZE, SIZE)).astype("float") / 255.0

    start, counts = time.perf_counter(), [0, 0]
    if batch_size <= 1:  # the tutorial's loop: one model.predict call per image
        for path in paths:
            probabilities = model.predict(np.expand_dims(load(path), axis=0), verbose=0)[0]
            counts[int(probabilities.argmax())] += 1
    else:  # what a user would write instead: model.predict on batches of the whole list
        for first in range(0, len(paths), batch_size):
            batch = np.stack([load(path) for path in paths[first : first + batch_size]])
            for row in model.predict(batch, batch_size=batch_size, verbose=0):
                counts[int(row.argmax())] += 1
    classify_s = time.perf_counter() - start
    print(f"[INFO] classified {len(paths)} images: {counts[0]} class 0, {counts[1]} class 1")
    emit({"images": len(paths), "load_s": load_s, "classify_s": classify_s})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.legacy", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    fit = commands.add_parser("train", help="train on DIR/{training,validation,testing}")
    fit.add_argument("--dataset", required=True)
    fit.add_argument("--model", required=True, help="HDF5 file to write")
    fit.add_argument("--epochs", type=int, default=25)
    fit.add_argument("--seed", type=int, default=42)
    fit.add_argument("--predict", metavar="DIR", help="then classify DIR as the article's pipeline")
    fit.add_argument("--predictions", metavar="FILE", help="--predict's probabilities (JSON)")
    run = commands.add_parser("predict", help="classify images one model.predict call at a time")
    run.add_argument("--images", required=True)
    run.add_argument("--model", help="HDF5 file from 'train' (default: untrained network)")
    run.add_argument("--samples", type=int, default=0, help="0 = every image")
    run.add_argument("--seed", type=int, default=42)
    run.add_argument(
        "--batch-size", type=int, default=1, help="1 = the tutorial's per-image loop (default)"
    )
    args = parser.parse_args(argv)
    if args.command == "train":
        train(args.dataset, args.model, args.epochs, args.seed, args.predict, args.predictions)
    else:
        predict(args.images, args.model, args.samples, args.seed, args.batch_size)


if __name__ == "__main__":
    main()
