"""Training on several devices with TensorFlow's own strategies.

``mirrored`` copies the model to every local GPU (or every logical CPU device when
there is no GPU) and averages gradients; ``multi-worker`` does the same across
machines, each started with a ``TF_CONFIG`` environment variable naming the
cluster and its own index (see the README). Without ``--distribute`` the default
strategy runs on one device.

In a multi-worker run every worker trains, but only the chief writes the model,
checkpoint and plot (:func:`is_chief`): on shared storage the others would write the
same files at once.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING

from pyimagesearch.core.errors import UserError

if TYPE_CHECKING:  # imported where used: is_chief is asked before TensorFlow starts
    import tensorflow as tf


def is_chief() -> bool:
    """Whether this process is the one that saves, by TensorFlow's rule: the 'chief' task
    when TF_CONFIG's cluster names one, else worker 0. Without TF_CONFIG a multi-worker
    run is a cluster of one, which is its own chief."""
    text = os.environ.get("TF_CONFIG", "").strip()
    try:
        config = json.loads(text) if text else {}
        task = config.get("task", {})
        kind, index = task.get("type", "worker"), int(task.get("index", 0))
        has_chief = bool(config.get("cluster", {}).get("chief"))
    except (ValueError, TypeError, AttributeError) as error:
        raise UserError(
            f"TF_CONFIG is unusable ({error}); it must be JSON like "
            '{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
            '"task": {"type": "worker", "index": 0}}'
        ) from error
    return (kind, index) == (("chief", 0) if has_chief else ("worker", 0))


def split_cpu(devices: int) -> None:
    """Show the CPU as several logical devices: the mirrored path, testable without GPUs.

    Must run before TensorFlow initialises its devices (before any tensor is made)."""
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(devices)]
    )


def multi_worker_strategy() -> tf.distribute.Strategy:
    """MultiWorkerMirroredStrategy with the two ``reduce`` calls Keras 3's fit() makes of
    it and it refuses (keras-team/keras#20585): a whole (images, labels) batch at once,
    and each scalar loss or metric along axis 0, which a scalar does not have. Here a
    structure is reduced one value at a time and a scalar across replicas. Every worker
    makes the same calls, so the collectives still line up."""
    import tensorflow as tf

    class MultiWorkerStrategy(tf.distribute.MultiWorkerMirroredStrategy):
        def reduce(self, reduce_op, value, axis):
            def one(item):
                scalar = self.experimental_local_results(item)[0].shape.rank == 0
                return super(MultiWorkerStrategy, self).reduce(
                    reduce_op, item, None if scalar else axis
                )

            return tf.nest.map_structure(one, value)

    return MultiWorkerStrategy()


def make_strategy(name: str | None) -> tf.distribute.Strategy:
    import tensorflow as tf

    if name is None:
        return tf.distribute.get_strategy()
    if name == "multi-worker":
        return multi_worker_strategy()
    gpus = tf.config.list_logical_devices("GPU")
    devices = [d.name for d in gpus] or [d.name for d in tf.config.list_logical_devices("CPU")]
    return tf.distribute.MirroredStrategy(devices)
