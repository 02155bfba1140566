"""Optimizers and learning-rate schedules of the recipes (``recipes.OPTIMIZERS``).

``sgd`` and ``adam`` are Keras' own. ``adam-then-sgd`` is Adam for the first epochs,
then SGD with momentum, freshly warmed up: written here as one optimizer that changes
rule at a step count, because compiling Keras' Adam and then Keras' SGD made Keras
trace the training step a second time at the switch and set up a second ``fit()``.
One optimizer took the default command from 56.5 s to 52.0 s on a 2-core Xeon
(docs/accuracy.md). Its arithmetic is Keras' Adam and SGD's, step for step: the
default command's weights are the same, bit for bit (tests/test_optimizers.py).
"""

from __future__ import annotations

import keras
from keras import ops


def learning_rate_schedule(
    schedule: str,
    epochs: int,
    steps_per_epoch: int,
    peak: float,
    warmup_epochs: int | None = None,
) -> keras.optimizers.schedules.LearningRateSchedule:
    """The tutorial's time decay, or a cosine one.

    "time-decay" is Keras 2's ``decay`` argument, lr / (1 + decay * iterations) with
    decay = lr / epochs, counted in optimizer iterations (batches): exactly
    ``InverseTimeDecay`` with ``decay_steps=1``. After 25 epochs it is still at half
    the peak, so the last epochs move the weights as much as the first ones did and
    the model saved is wherever the noise left it. "cosine" warms up linearly for one
    epoch (or WARMUP_EPOCHS), then falls to zero, so the run ends settled.
    """
    if schedule == "cosine":
        # One epoch of warm-up, but at most a tenth of the run: a 2-epoch trial would
        # otherwise spend half of it warming up (and a 1-epoch smoke test has no room).
        warmup = min(steps_per_epoch, epochs * steps_per_epoch // 10) if epochs > 1 else 0
        if warmup_epochs is not None and epochs > 1:
            warmup = min(warmup_epochs, epochs - 1) * steps_per_epoch
        return keras.optimizers.schedules.CosineDecay(
            0.0 if warmup else peak,
            decay_steps=max(epochs * steps_per_epoch - warmup, 1),
            warmup_target=peak if warmup else None,
            warmup_steps=warmup,
        )
    return keras.optimizers.schedules.InverseTimeDecay(
        peak, decay_steps=1, decay_rate=peak / epochs
    )


@keras.saving.register_keras_serializable(package="pyimagesearch")
class SwitchingSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """FIRST's rate until SWITCH_STEP, then SECOND's, counted from the switch (SECOND
    starts its own warm-up there, as a freshly compiled optimizer would)."""

    def __init__(self, switch_step: int, first, second):
        self.switch_step = int(switch_step)
        self.first, self.second = (
            keras.optimizers.schedules.deserialize(part) if isinstance(part, dict) else part
            for part in (first, second)
        )

    def __call__(self, step):
        step = ops.convert_to_tensor(step)
        return ops.where(
            step < self.switch_step,
            self.first(step),
            self.second(ops.maximum(step - self.switch_step, 0)),
        )

    def get_config(self) -> dict:
        return {
            "switch_step": self.switch_step,
            "first": keras.optimizers.schedules.serialize(self.first),
            "second": keras.optimizers.schedules.serialize(self.second),
        }


@keras.saving.register_keras_serializable(package="pyimagesearch")
class AdamThenSGD(keras.optimizers.Optimizer):
    """Keras' Adam for the first SWITCH_STEP steps, then Keras' SGD with MOMENTUM
    (its momentum starting from zero at the switch), under one learning-rate schedule
    (a ``SwitchingSchedule``)."""

    def __init__(
        self,
        switch_step: int,
        learning_rate=0.001,
        momentum: float = 0.9,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-7,
        name: str = "adam_then_sgd",
        **kwargs,
    ):
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        self.switch_step = int(switch_step)
        self.momentum = momentum
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        self._adam_momentums, self._velocities, self._sgd_momentums = self.add_optimizer_variables(
            var_list, ["momentum", "velocity", "sgd_momentum"]
        )

    def _backend_update_step(self, grads, trainable_variables, learning_rate):
        # The scalars that every variable's update shares are made once a step, not once
        # a variable (``_scalars``): traced per variable they were most of what this
        # optimizer added to the first training step.
        self._shared: dict | None = {}
        try:
            super()._backend_update_step(grads, trainable_variables, learning_rate)
        finally:
            self._shared = None

    def _scalars(self, dtype, learning_rate) -> tuple:
        """(in Adam's steps, Adam's step size, SGD's learning rate, momentum) in DTYPE."""
        shared = getattr(self, "_shared", None)
        if shared is not None and dtype in shared:
            return shared[dtype]
        lr = ops.cast(learning_rate, dtype)
        step = ops.cast(self.iterations + 1, dtype)
        beta_1_power = ops.power(ops.cast(self.beta_1, dtype), step)
        beta_2_power = ops.power(ops.cast(self.beta_2, dtype), step)
        alpha = lr * ops.sqrt(1 - beta_2_power) / (1 - beta_1_power)
        scalars = (self.iterations < self.switch_step, alpha, lr, ops.cast(self.momentum, dtype))
        if shared is not None:
            shared[dtype] = scalars
        return scalars

    def update_step(self, gradient, variable, learning_rate):
        # Both rules are computed and one is kept with ``where``: exactly Keras' Adam
        # and SGD arithmetic (a ``cond`` per variable traced two branch functions each
        # and made the first epoch slower).
        index = self._get_variable_index(variable)
        in_adam, alpha, lr, momentum = self._scalars(variable.dtype, learning_rate)
        gradient = ops.cast(gradient, variable.dtype)
        # Adam, as keras.optimizers.Adam (its moments keep moving after the switch, unused).
        m, v = self._adam_momentums[index], self._velocities[index]
        self.assign_add(m, ops.multiply(ops.subtract(gradient, m), 1 - self.beta_1))
        self.assign_add(v, ops.multiply(ops.subtract(ops.square(gradient), v), 1 - self.beta_2))
        adam_step = ops.divide(ops.multiply(m, alpha), ops.add(ops.sqrt(v), self.epsilon))
        # SGD with momentum, as keras.optimizers.SGD; its velocity stays zero until the switch.
        velocity = self._sgd_momentums[index]
        sgd_velocity = ops.subtract(ops.multiply(velocity, momentum), ops.multiply(gradient, lr))
        self.assign(velocity, ops.where(in_adam, velocity, sgd_velocity))
        self.assign(
            variable,
            ops.where(in_adam, ops.subtract(variable, adam_step), ops.add(variable, sgd_velocity)),
        )

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            {
                "switch_step": self.switch_step,
                "momentum": self.momentum,
                "beta_1": self.beta_1,
                "beta_2": self.beta_2,
                "epsilon": self.epsilon,
            }
        )
        return config
