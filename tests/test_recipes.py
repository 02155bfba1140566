"""The recipes: the article's hyperparameters one flag away, the default's schedule, and
what a saved model records about the recipe that made it."""

import keras
import numpy as np
import pytest

import save_model
from pyimagesearch.serialization import read_metadata
from pyimagesearch.train import build_model, compile_model


def resolved(*argv: str) -> dict:
    args = save_model.parse_args(["-d", "ds", "-m", "m.model", *argv])
    keys = ("recipe", "epochs", "batch_size", "learning_rate", "schedule", "augmentation")
    return {key: getattr(args, key) for key in keys} | {"image_size": args.image_size}


def test_recipe_tutorial_is_the_articles_hyperparameters():
    assert resolved("--recipe", "tutorial") == {
        "recipe": "tutorial",
        "epochs": 25,
        "batch_size": 32,
        "learning_rate": 0.1,
        "schedule": "time-decay",
        "augmentation": "tutorial",
        "image_size": 64,
    }


def test_default_is_the_stable_recipe_and_flags_override_it():
    default = resolved()
    assert default["recipe"] == "stable"
    assert (default["learning_rate"], default["schedule"], default["epochs"]) == (
        0.03,
        "cosine",
        12,
    )
    assert resolved("--epochs", "30", "--learning-rate", "0.05")["epochs"] == 30
    assert resolved("--learning-rate", "0.05")["learning_rate"] == 0.05


def learning_rates(schedule: str, epochs: int, steps: int, peak: float) -> np.ndarray:
    model = build_model(2, (32, 32))
    compile_model(model, epochs, schedule, steps, peak)
    rate = model.optimizer._learning_rate  # the schedule object
    return np.array([float(rate(step)) for step in range(epochs * steps + 1)])


@pytest.mark.parametrize("epochs, peak", [(25, 0.1), (10, 0.05)])
def test_time_decay_is_keras_2s_decay_argument(epochs, peak):
    """lr / (1 + decay * iterations) with decay = lr / epochs, as the article's SGD had it."""
    rates = learning_rates("time-decay", epochs=epochs, steps=11, peak=peak)
    iterations = np.arange(len(rates))
    np.testing.assert_allclose(rates, peak / (1 + peak / epochs * iterations), rtol=1e-6)


def test_cosine_warms_up_for_one_epoch_then_ends_at_zero():
    rates = learning_rates("cosine", epochs=12, steps=11, peak=0.03)
    assert rates[0] == 0.0
    assert rates.argmax() == 11 and rates.max() == pytest.approx(0.03)
    assert np.all(np.diff(rates[11:]) <= 1e-9)
    assert rates[-1] == pytest.approx(0.0, abs=1e-9)


def test_cosine_over_one_epoch_needs_no_warm_up():
    rates = learning_rates("cosine", epochs=1, steps=11, peak=0.03)
    assert rates[0] == pytest.approx(0.03) and rates[-1] == pytest.approx(0.0, abs=1e-9)


def test_saved_model_records_the_recipe_that_made_it(trained_model):
    provenance = read_metadata(trained_model)["provenance"]
    # The fixture trains with the default recipe and --epochs 2 --learning-rate 0.01.
    assert provenance["recipe"] == "stable"
    assert provenance["learning_rate"] == 0.01
    assert provenance["schedule"] == "cosine"
    assert provenance["epochs"] == 2
    assert keras.__version__ == provenance["keras_version"]
