"""Training: the tutorial's ResNet, optimizer and schedule, fed by the tf.data pipeline."""

from __future__ import annotations

import datetime
import platform
from dataclasses import dataclass, field

import keras
import numpy as np
import tensorflow as tf
from sklearn.metrics import classification_report

import pyimagesearch
from pyimagesearch.augmentation import build_augmenter
from pyimagesearch.data import load_split, make_dataset, scan_dataset
from pyimagesearch.preprocessing import DEFAULT_IMAGE_SIZE, default_recipe
from pyimagesearch.resnet import ResNet

INITIAL_LEARNING_RATE = 0.1


@dataclass
class TrainConfig:
    dataset: str
    epochs: int = 25
    batch_size: int = 32
    seed: int | None = None
    image_size: tuple[int, int] = DEFAULT_IMAGE_SIZE
    verbose: int = 1


@dataclass
class TrainResult:
    model: keras.Model
    history: dict
    report: str
    metadata: dict = field(default_factory=dict)


def build_model(num_classes: int, image_size: tuple[int, int] = DEFAULT_IMAGE_SIZE) -> keras.Model:
    """The tutorial's network: three stages (2, 2, 3) of 32-64-128-256 filters."""
    height, width = image_size
    return ResNet.build(width, height, 3, num_classes, (2, 2, 3), (32, 64, 128, 256), reg=0.0005)


def compile_model(model: keras.Model, epochs: int) -> None:
    """SGD(0.1, momentum 0.9) with Keras 2's time decay: lr / (1 + decay * iterations).

    Keras 2's ``decay`` argument counted optimizer iterations (batches), which is
    exactly ``InverseTimeDecay`` with ``decay_steps=1``.
    """
    schedule = keras.optimizers.schedules.InverseTimeDecay(
        INITIAL_LEARNING_RATE, decay_steps=1, decay_rate=INITIAL_LEARNING_RATE / epochs
    )
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate=schedule, momentum=0.9),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )


def train(config: TrainConfig) -> TrainResult:
    """Train on DIR/training, watch DIR/validation, report on DIR/testing."""
    if config.seed is not None:
        keras.utils.set_random_seed(config.seed)
    splits = scan_dataset(config.dataset)
    recipe = default_recipe(config.image_size)
    class_names = splits["training"].class_names

    arrays = {}
    for name, split in splits.items():
        print(f"Found {len(split.paths)} images belonging to {len(class_names)} classes.")
        arrays[name] = load_split(split, recipe)

    train_ds = make_dataset(
        *arrays["training"],
        config.batch_size,
        augment=build_augmenter(config.seed),
        shuffle_seed=config.seed if config.seed is not None else np.random.randint(2**31),
    )
    val_ds = make_dataset(*arrays["validation"], config.batch_size)
    test_ds = make_dataset(*arrays["testing"], config.batch_size)

    model = build_model(len(class_names), config.image_size)
    compile_model(model, config.epochs)
    print(f"[INFO] training network for {config.epochs} epochs...")
    history = model.fit(
        train_ds, validation_data=val_ds, epochs=config.epochs, verbose=config.verbose
    )

    print("[INFO] evaluating network...")
    test_images, test_labels = arrays["testing"]
    probabilities = model.predict(test_ds, verbose=0)
    predictions = probabilities.argmax(axis=1)
    report = classification_report(
        test_labels,
        predictions,
        labels=range(len(class_names)),
        target_names=class_names,
        digits=4,
        zero_division=0,
    )
    test_accuracy = float((predictions == test_labels).mean())

    metadata = {
        "class_names": class_names,
        "preprocessing": recipe,
        "provenance": {
            "project_version": pyimagesearch.__version__,
            "tensorflow_version": tf.__version__,
            "keras_version": keras.__version__,
            "python_version": platform.python_version(),
            "saved_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "seed": config.seed,
            "dataset": str(config.dataset),
            "file_counts": {name: len(arrays[name][1]) for name in arrays},
            "epochs": config.epochs,
            "batch_size": config.batch_size,
            "final_metrics": {
                **{k: float(v[-1]) for k, v in history.history.items()},
                "test_accuracy": test_accuracy,
            },
        },
    }
    return TrainResult(model, dict(history.history), report, metadata)
