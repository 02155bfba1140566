"""The recipes: how the command line resolves a recipe and the flags that override it,
the schedules' learning rates, and what a saved model records about the recipe that made
it (the recipes' values themselves are pyimagesearch/core/recipes.py's, not restated here)."""

import keras
import numpy as np
import pytest

import save_model
from pyimagesearch.core.recipes import (
    BN_STATISTICS,
    DEFAULT_RECIPE,
    HEADS,
    OPTIMIZERS,
    RECIPES,
    SCHEDULES,
    STAIN_NORMALIZATIONS,
)
from pyimagesearch.network.augmentation import AUGMENTATIONS
from pyimagesearch.options import TRAINING_PRECISIONS
from pyimagesearch.training.serialization import read_metadata
from pyimagesearch.training.train import build_model, compile_model

FLAGS = {  # each recipe setting and the save_model.py flag that overrides it
    "epochs": "--epochs",
    "batch_size": "--batch-size",
    "learning_rate": "--learning-rate",
    "schedule": "--schedule",
    "augmentation": "--augmentation",
    "image_size": "--image-size",
    "head": "--head",
    "stain": "--stain",
    "optimizer": "--optimizer",
    "bn_statistics": "--bn-statistics",
    "precision": "--precision",
}
OTHER = {"epochs": 3, "batch_size": 5, "learning_rate": 0.007, "schedule": None,
         "augmentation": None, "image_size": 40, "head": None, "stain": None, "optimizer": None,
         "bn_statistics": None, "precision": None}  # fmt: skip
CHOICES = {"schedule": SCHEDULES, "augmentation": AUGMENTATIONS, "head": HEADS,
           "stain": STAIN_NORMALIZATIONS,
           "optimizer": tuple(OPTIMIZERS), "bn_statistics": BN_STATISTICS,
           "precision": TRAINING_PRECISIONS}  # fmt: skip


def resolved(*argv: str) -> dict:
    args = save_model.parse_args(["-d", "ds", "-m", "m.model", *argv])
    return {key: getattr(args, key) for key in FLAGS}


@pytest.mark.parametrize("recipe", sorted(RECIPES))
def test_a_recipe_fills_what_the_command_line_leaves_out(recipe):
    """--recipe NAME alone runs that recipe's settings; any one flag replaces its own
    setting and leaves the recipe's others in place (another --optimizer also brings its
    own learning rate, below)."""
    base = resolved("--recipe", recipe)
    assert base == {key: RECIPES[recipe][key] for key in FLAGS}
    for key, flag in FLAGS.items():
        value = OTHER[key]
        if value is None:  # a choice: any other than the recipe's
            value = next(c for c in CHOICES[key] if c != base[key])
        changed = resolved("--recipe", recipe, flag, str(value))
        if key == "optimizer":
            changed["learning_rate"] = base["learning_rate"]
        assert changed == {**base, key: value}, flag


def test_another_optimizer_brings_its_own_learning_rate_unless_one_is_given():
    """SGD's 0.03 would make Adam diverge, and Adam's 0.001 would leave SGD still: an
    --optimizer that is not the recipe's peaks at its own rate, and --learning-rate
    still wins. (Mutation: dropping the rule in apply_recipe fails the first assert.)"""
    assert resolved("--optimizer", "adam")["learning_rate"] == OPTIMIZERS["adam"]
    assert resolved("--recipe", "adam", "--optimizer", "sgd")["learning_rate"] == 0.03
    assert resolved("--optimizer", "adam", "--learning-rate", "0.002")["learning_rate"] == 0.002
    # The recipe's own optimizer named again changes nothing.
    assert resolved("--recipe", "stable", "--optimizer", "sgd") == resolved("--recipe", "stable")


def test_without_recipe_the_default_one_is_used():
    assert resolved() == resolved("--recipe", DEFAULT_RECIPE)
    assert save_model.parse_args(["-d", "ds", "-m", "m.model"]).recipe == DEFAULT_RECIPE


def learning_rates(
    schedule: str, epochs: int, steps: int, peak: float, optimizer: str = "sgd"
) -> np.ndarray:
    model = build_model(2, (32, 32))
    compile_model(model, epochs, schedule, steps, peak, optimizer)
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


def test_adam_then_sgd_warms_sgd_up_over_a_third_of_its_epochs():
    """The default's SGD phase (9 of 12 epochs) climbs to its peak over 3 epochs: with
    one, SGD's peak threw splits back to the plateau (docs/accuracy.md). (Mutation: the
    SGD phase built without ``warmup_epochs`` fails: its peak comes one epoch in.)"""
    steps, peak = 11, 0.03
    rates = learning_rates("cosine", epochs=12, steps=steps, peak=peak, optimizer="adam-then-sgd")
    switch = 3 * steps
    assert rates[:switch].max() == pytest.approx(OPTIMIZERS["adam"], rel=1e-3)
    assert rates[switch] == 0.0
    assert rates[switch + steps] == pytest.approx(peak / 3, rel=1e-4)
    assert rates.argmax() == switch + 3 * steps and rates.max() == pytest.approx(peak)
    assert rates[-1] == pytest.approx(0.0, abs=1e-9)


def test_cosine_over_one_epoch_needs_no_warm_up():
    rates = learning_rates("cosine", epochs=1, steps=11, peak=0.03)
    assert rates[0] == pytest.approx(0.03) and rates[-1] == pytest.approx(0.0, abs=1e-9)


def test_saved_model_records_the_recipe_that_made_it(trained_model):
    provenance = read_metadata(trained_model)["provenance"]
    # The fixture trains with --recipe stable (named, so that it does not move with the
    # default recipe), --epochs 2 and --learning-rate 0.01.
    assert provenance["recipe"] == "stable"
    assert provenance["learning_rate"] == 0.01
    assert provenance["schedule"] == "cosine"
    assert provenance["epochs"] == 2
    assert keras.__version__ == provenance["keras_version"]


def config_with(*argv: str):
    """The TrainConfig save_model.py trains with for ARGV (its recipe applied)."""
    return save_model.training_config(save_model.parse_args(["-d", "ds", "-m", "m.model", *argv]))


def other_value(key: str, base: dict):
    value = OTHER[key]
    if value is None:  # a choice: any other than the default recipe's
        value = next(c for c in CHOICES[key] if c not in (base[key], "auto"))
    return value


def test_the_settings_default_to_the_default_recipe_and_every_one_is_recorded():
    """TrainConfig's defaults are the default recipe's (they were the tutorial's), the
    command line gives the same, and the provenance records every setting under its
    name, with the value given. (Mutations: "head" left out of provenance_settings
    fails the last loop; OPTIMIZERS["adam-then-sgd"] back to 0.03 fails the peak.)"""
    from pyimagesearch.core.recipes import TrainConfig
    from pyimagesearch.training.train import provenance

    default = RECIPES[DEFAULT_RECIPE]
    assert config_with() == TrainConfig("ds", checkpoint="m.model.checkpoint")
    assert TrainConfig("ds").image_size == (default["image_size"],) * 2
    assert OPTIMIZERS["adam-then-sgd"] == default["learning_rate"]
    names = {key: key for key in FLAGS} | {"precision": "training_precision"}
    for key, flag in FLAGS.items():
        value = other_value(key, default)
        config = config_with(flag, str(value))
        recorded = provenance(config, {}, 1, {})
        expected = [value, value] if key == "image_size" else value
        assert recorded[names[key]] == expected, flag
        assert recorded["recipe"] == DEFAULT_RECIPE


def test_a_checkpoint_of_any_other_setting_is_refused(tmp_path):
    """--resume with any setting the checkpoint was not trained with is refused in one
    line before anything loads: every setting but --bn-statistics (applied after
    training, so a resumed run may choose either) and --patience (a stopping rule).
    (Mutations: learning_rate marked checkpoint=False in recipes.TrainConfig resumes a
    run at another peak; keep marked so resumes a --keep last checkpoint as best.)"""
    from pyimagesearch.core.errors import UserError
    from pyimagesearch.core.recipes import checkpoint_settings
    from pyimagesearch.training import train as steps
    from pyimagesearch.training.serialization import save_model as write

    base = {**RECIPES["stable"], "image_size": 32}
    made = config_with(*(a for k, f in FLAGS.items() for a in (f, str(base[k]))), "--seed", "1")
    checkpoint = tmp_path / "m.model.checkpoint"
    state = {"epoch": 1, **checkpoint_settings(made), "seed": 1, "history": {}}
    metadata = {"class_names": ["a", "b"], "preprocessing": steps.default_recipe((32, 32))}
    write(steps.build_model(2, (32, 32)), checkpoint, {**metadata, "checkpoint": state})

    def resume(*argv: str):
        config = config_with(
            *(a for k, f in FLAGS.items() for a in (f, str(base[k]))), *argv,
            "--checkpoint", str(checkpoint), "--resume",
        )  # fmt: skip
        steps.check_resumable(config, ["a", "b"])

    resume()  # the same settings resume
    resume("--bn-statistics", "recomputed")
    for key, flag in FLAGS.items():
        if key == "bn_statistics":
            continue
        value = other_value(key, base)
        with pytest.raises(UserError, match="--resume: checkpoint was made with"):
            resume(flag, str(value))
    with pytest.raises(UserError, match="--resume: checkpoint used --seed 1"):
        resume("--seed", "2")
    # --keep best needs the best epoch's weights from the start; --patience is a rule only.
    resume("--patience", "3")
    for flag, value in (("--keep", "best"), ("--class-weight", "balanced")):
        with pytest.raises(UserError, match="--resume: checkpoint was made with"):
            resume(flag, value)
