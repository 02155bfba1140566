"""Training-speed choices, none of which reach the saved model.

Measured on a 2-core CPU (see bench/RESULTS-xeon-2026-11-26.md): Keras 3's BatchNormalization on
the TensorFlow backend is computed from unfused moments and dominates the step;
TensorFlow's fused kernel trains the same network about 1.4x faster. bfloat16 on
AMX matrix units is another 1.2-1.3x. It cost accuracy with the article's recipe (one of
five seeds never learned) but not with ``stable`` or the default ``adam-then-sgd``,
which on a Xeon with AMX was as good on unseen patients in bfloat16 as in float32 over
ten splits (docs/accuracy.md): that recipe's ``--precision auto`` trains in bfloat16
where the CPU has AMX, the others stay float32 unless asked. The model saved for users
is rebuilt with the stock layer in float32 and the trained weights, so it loads anywhere.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="pyimagesearch")
class FusedBatchNormalization(keras.layers.BatchNormalization):
    """BatchNormalization through ``tf.nn.fused_batch_norm`` (channels-last 4-D only).

    Same variables and arguments as the stock layer, so weights move between the
    two unchanged. Like Keras 2's fused path, the moving variance is updated with
    the unbiased batch variance (a factor n/(n-1), with n = batch x height x width).
    """

    def call(self, inputs, training=False):
        if inputs.shape.rank != 4 or self.axis not in (-1, 3):
            return super().call(inputs, training=training)
        if training:
            outputs, mean, variance = tf.compat.v1.nn.fused_batch_norm(
                inputs, self.gamma, self.beta, epsilon=self.epsilon, is_training=True
            )
            rate = 1.0 - self.momentum
            self.moving_mean.assign_sub((self.moving_mean - mean) * rate)
            self.moving_variance.assign_sub((self.moving_variance - variance) * rate)
            return outputs
        outputs, _, _ = tf.compat.v1.nn.fused_batch_norm(
            inputs,
            self.gamma,
            self.beta,
            mean=self.moving_mean,
            variance=self.moving_variance,
            epsilon=self.epsilon,
            is_training=False,
        )
        return outputs


@contextlib.contextmanager
def float32_policy() -> Iterator[None]:
    """Keras' float32 policy for the models built inside, whatever training set for the
    process. What users load is float32 (``train.portable_copy``, the cross-validation
    ensemble): built after a bfloat16 training under its policy, a network carries
    bfloat16 casts, and OpenVINO's converter failed on one (it was then saved without
    its compiled network)."""
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("float32")
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def trace_faster() -> None:
    """Turn off Keras' and TensorFlow's traceback filtering for this process.

    Filtering wraps every layer call in a handler that trims framework frames from
    error tracebacks; while ``fit`` traces its train and test functions, that Python
    overhead costs more than the graph itself. Measured on a 2-core AMD EPYC, one
    epoch of the tutorial split, start of ``train`` to model: 17-22 s with filtering,
    11-12 s without (two runs each). Errors then show the full traceback, frames of
    Keras and TensorFlow included; nothing else changes.
    """
    keras.config.disable_traceback_filtering()
    tf.debugging.disable_traceback_filtering()


def cpu_has_amx(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Whether the CPU has AMX bfloat16 matrix units, read from the kernel's CPU flags
    (Linux; elsewhere False). AVX512-BF16 alone is not enough: on an AMD EPYC with it,
    bfloat16 trained only 1.08x faster (docs/accuracy.md), not worth other arithmetic."""
    try:
        lines = Path(cpuinfo).read_text().splitlines()
    except OSError:
        return False
    return any(line.startswith("flags") and "amx_bf16" in line.split() for line in lines)


def training_precision(requested: str) -> tuple[str, str]:
    """(Keras policy, why) for --precision REQUESTED: ``auto`` is mixed_bfloat16 on a
    CPU with AMX and no GPU (1.2x faster steps there, as accurate: docs/accuracy.md),
    float32 elsewhere; any other value is itself."""
    if requested != "auto":
        return requested, "asked for"
    if tf.config.list_physical_devices("GPU"):
        return "float32", "auto: a GPU"
    if cpu_has_amx():
        return "mixed_bfloat16", "auto: this CPU has AMX"
    return "float32", "auto: this CPU has no AMX"
