"""Training on several devices with TensorFlow's own strategies.

``mirrored`` copies the model to every local GPU (or every logical CPU device when
there is no GPU) and averages gradients; ``multi-worker`` does the same across
machines, each started with a ``TF_CONFIG`` environment variable naming the
cluster and its own index (see the README). Without ``--distribute`` the default
strategy runs on one device.
"""

from __future__ import annotations

import tensorflow as tf

STRATEGIES = ("mirrored", "multi-worker")


def split_cpu(devices: int) -> None:
    """Show the CPU as several logical devices: the mirrored path, testable without GPUs.

    Must run before TensorFlow initialises its devices (before any tensor is made)."""
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(devices)]
    )


def make_strategy(name: str | None) -> tf.distribute.Strategy:
    if name is None:
        return tf.distribute.get_strategy()
    if name == "multi-worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_logical_devices("GPU")
    devices = [d.name for d in gpus] or [d.name for d in tf.config.list_logical_devices("CPU")]
    return tf.distribute.MirroredStrategy(devices)
