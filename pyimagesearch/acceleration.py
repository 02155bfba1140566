"""Training-speed choices made at run time, none of which reach the saved model.

Measured on a 2-core CPU (see bench/RESULTS.md): Keras 3's BatchNormalization on
the TensorFlow backend is computed from unfused moments and dominates the step;
TensorFlow's fused kernel trains the same network about 1.4x faster, and with
bfloat16 matrix units (AMX) another 1.3x. The model saved for users is rebuilt
with the stock layer in float32 and the trained weights, so it loads anywhere.
"""

from __future__ import annotations

from pathlib import Path

import keras
import tensorflow as tf

PRECISIONS = ("auto", "float32", "mixed_bfloat16", "mixed_float16")


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


def has_amx_bf16() -> bool:
    try:
        return "amx_bf16" in Path("/proc/cpuinfo").read_text()
    except OSError:
        return False


def choose_precision(requested: str = "auto") -> str:
    """mixed_float16 on a GPU, mixed_bfloat16 on CPUs with AMX, float32 elsewhere."""
    if requested != "auto":
        return requested
    if tf.config.list_physical_devices("GPU"):
        return "mixed_float16"
    return "mixed_bfloat16" if has_amx_bf16() else "float32"
