"""adam-then-sgd as one optimizer: Keras' Adam, then a freshly started Keras SGD."""

import keras
import numpy as np
import tensorflow as tf

from pyimagesearch.network.optimizers import AdamThenSGD, SwitchingSchedule, learning_rate_schedule


def test_adam_then_sgd_updates_the_weights_as_adam_then_a_fresh_sgd_would():
    """Ten steps, switching after four, traced as fit() traces them, against Keras' own
    Adam for four steps and then a new SGD(momentum 0.9) on the same weights, each on
    its own schedule. (Mutations: starting SGD's schedule at the global step in place of
    the step since the switch fails step 5; Adam's step still taken after the switch
    fails step 5; SGD's momentum moving during the Adam steps fails step 5.)"""
    rng = np.random.default_rng(0)
    start = rng.normal(size=(5, 3)).astype("float32")
    gradients = [rng.normal(size=(5, 3)).astype("float32") for _ in range(10)]
    adam_rate = learning_rate_schedule("cosine", 5, 2, 0.001)
    sgd_rate = learning_rate_schedule("cosine", 3, 2, 0.03)
    switching = AdamThenSGD(4, SwitchingSchedule(4, adam_rate, sgd_rate))
    adam = keras.optimizers.Adam(adam_rate)
    sgd = keras.optimizers.SGD(sgd_rate, momentum=0.9)
    mine, reference = keras.Variable(start), keras.Variable(start)

    @tf.function
    def switching_step(gradient):
        switching.apply([gradient], [mine])

    for step, gradient in enumerate(gradients, start=1):
        switching_step(tf.constant(gradient))
        (adam if step <= 4 else sgd).apply([gradient], [reference])
        np.testing.assert_allclose(
            mine.numpy(), reference.numpy(), rtol=1e-5, atol=1e-6, err_msg=f"step {step}"
        )
    assert not np.allclose(mine.numpy(), start)


def test_the_optimizer_and_its_schedule_come_back_from_their_config():
    """A checkpoint stores the optimizer by its config; resuming must rebuild the same
    switch and both schedules. (Mutation: leaving switch_step out of get_config makes
    Keras refuse the config.)"""
    original = AdamThenSGD(
        6,
        SwitchingSchedule(
            6,
            learning_rate_schedule("cosine", 4, 2, 0.001),
            learning_rate_schedule("cosine", 12, 2, 0.03),  # one epoch (2 steps) of warm-up
        ),
    )
    rebuilt = keras.optimizers.deserialize(keras.optimizers.serialize(original))
    assert isinstance(rebuilt, AdamThenSGD) and rebuilt.switch_step == 6
    for step in (0, 3, 5, 6, 7, 11):
        assert float(rebuilt._learning_rate(step)) == float(original._learning_rate(step))
    # Its own warm-up starts at the switch: no rate at step 6, SGD's peak one epoch on.
    assert float(rebuilt._learning_rate(6)) == 0.0
    assert float(rebuilt._learning_rate(8)) == np.float32(0.03)


def test_the_shared_scalars_of_a_step_are_traced_once_not_once_a_variable():
    """Adam's step size and bias corrections are the same for every variable: traced once
    a step, the first training step traces in about half the time. (Mutation: making
    ``_scalars`` compute afresh for every variable gives 2 Pow ops a variable.)"""
    variables = [keras.Variable(np.ones((3, 2), "float32")) for _ in range(5)]
    optimizer = AdamThenSGD(4, learning_rate=0.001)
    optimizer.build(variables)
    step = tf.function(lambda grads: optimizer.apply(grads, variables))
    gradients = [tf.ones((3, 2)) for _ in variables]
    graph = step.get_concrete_function(gradients).graph
    powers = [op for op in graph.get_operations() if op.type == "Pow"]
    assert len(powers) == 2  # beta_1 and beta_2 to the step, once for all five variables


def test_the_first_training_step_creates_no_variable_while_it_is_traced():
    """A variable made while tf.function traces the training step makes TensorFlow trace
    it twice (some 3 s of the default command's first epoch on a 2-core CPU). Keras made
    the "accuracy" metric's variables there; compile_model gives it a metric object whose
    variables exist before fit. (Mutation: metrics=["accuracy"] creates 'total' and
    'count' inside the trace.)"""
    from pyimagesearch.training.train import compile_model

    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(inputs))
    compile_model(model, 2, "cosine", 2, 0.01, "adam-then-sgd")
    made_while_tracing = []

    def creator(next_creator, **kwargs):
        if tf.inside_function():
            made_while_tracing.append(kwargs.get("name"))
        return next_creator(**kwargs)

    data = tf.data.Dataset.from_tensor_slices(
        (np.zeros((8, 4), "float32"), np.zeros(8, "int64"))
    ).batch(4)
    with tf.variable_creator_scope(creator):
        model.fit(data, epochs=1, verbose=0, shuffle=False)
    assert made_while_tracing == []
