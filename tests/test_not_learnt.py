"""A model that learnt nothing is named: by save_model.py, in the file, by load_model.py,
by the server, per crossval fold, and as a caveat of the audit."""

from pathlib import Path

import numpy as np
import pytest
from conftest import run_script, write_image

from pyimagesearch.core.evaluation import learning_check, not_learnt_warning

NAMES = ["defect", "ok"]


def test_the_check_on_answers_that_did_and_did_not_learn():
    rng = np.random.default_rng(0)
    labels = np.r_[np.zeros(4, int), np.ones(36, int)]  # 10% defect, as the set
    # Always the majority: accuracy 0.90, balanced accuracy 0.50.
    stuck = learning_check(labels, np.ones(40, int), NAMES)
    assert stuck["learnt"] is False and stuck["balanced_accuracy"] == 0.5
    assert stuck["commonest_answer"] == "ok" and stuck["commonest_share"] == 1.0
    message = not_learnt_warning(stuck)
    assert "has not learnt" in message and "40 validation images" in message
    assert "0.500" in message and "'ok' for 100% of them, where 90% are" in message
    # Right but for one defect: learnt.
    good = learning_check(labels, np.r_[0, 0, 0, 1, np.ones(36, int)], NAMES)
    assert good["learnt"] is True and not_learnt_warning(good) is None
    # Ten classes, answers at random: balanced accuracy near 0.1 is near chance.
    many = [f"c{i}" for i in range(10)]
    labels10 = rng.integers(0, 10, 500)
    assert learning_check(labels10, rng.integers(0, 10, 500), many)["learnt"] is False
    assert learning_check(labels10, labels10, many)["learnt"] is True
    # One class takes nearly every answer though half the images are the other.
    half = np.r_[np.zeros(50, int), np.ones(50, int)]
    assert learning_check(half, np.r_[0, 0, 0, np.ones(97, int)], NAMES)["learnt"] is False
    # Files without figures, or with malformed ones, give no warning (and no crash).
    for stored in (None, {}, {"learnt": True}, {"learnt": False, "images": "x"}, [1]):
        assert not_learnt_warning(stored) is None


@pytest.fixture(scope="module")
def random_labels(tmp_path_factory) -> Path:
    """360 'ok' and 40 'defect' noise images: labels with nothing to learn, 90/10."""
    root = tmp_path_factory.mktemp("random") / "parts"
    for i in range(400):
        write_image(root / ("defect" if i % 10 == 0 else "ok") / f"{i:04d}.png",
                    size=(32, 32), seed=i)  # fmt: skip
    return root


def test_random_labels_are_named_by_training_the_file_loading_and_the_server(
    random_labels: Path, tmp_path: Path
):
    model = tmp_path / "random.keras"
    trained = run_script("save_model.py", "--dataset", str(random_labels), "--model",
                         str(model), "--plot", str(tmp_path / "p.png"), "--image-size", "32",
                         "--epochs", "2", "--augmentation", "none", "--val-split", "0.3",
                         "--seed", "1")  # fmt: skip
    assert trained.returncode == 0, trained.stderr[-3000:]
    warning = [line for line in trained.stderr.splitlines() if "has not learnt" in line]
    assert len(warning) == 1 and warning[0].startswith("[WARNING] this model has not learnt")
    assert "120 validation images" in warning[0], warning
    loaded = run_script("load_model.py", "--images", str(random_labels / "ok"), "--model",
                        str(model), "--output", str(tmp_path / "m.png"))  # fmt: skip
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    assert warning[0] in loaded.stderr.splitlines()  # the same words, from the file

    from pyimagesearch.serving.serve import Settings, build_service

    service = build_service(Settings(str(model)))
    assert service.identity()["warning"] == warning[0].removeprefix("[WARNING] ")


def test_the_audit_warns_when_its_fold_models_are_weak():
    """Three-epoch folds at 0.65 flagged a fifth of correctly labelled images: the audit
    says, before its figures, that such models cannot judge labels."""
    from pyimagesearch.audit import OutOfFold, weak_models_caveat

    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 400)

    def oof(right: float, stuck_fold: bool = False) -> OutOfFold:
        correct = np.arange(400) % 100 < round(right * 100)  # exactly RIGHT in each fold
        predicted = np.where(correct, labels, 1 - labels)
        if stuck_fold:
            predicted[:200] = 1  # fold 1 answers one class only
        probabilities = np.eye(2)[predicted] * 0.8 + 0.1
        rows = [{"fold": "1" if i < 200 else "2"} for i in range(400)]
        return OutOfFold(rows, NAMES, labels, probabilities, "group")

    assert weak_models_caveat(oof(0.97)) is None
    weak = weak_models_caveat(oof(0.75))
    assert weak.startswith("the fold models are weak (out-of-sample accuracy 0.7")
    assert "not wrong labels" in weak and "did not learn" not in weak
    assert "fold(s) 1 did not learn" in weak_models_caveat(oof(0.97, stuck_fold=True))


def test_an_unlabelled_binary_set_takes_its_rarer_class_as_positive():
    """Issue 40: "ok" (380 images) was the positive class over "defect" (20). Mutation:
    choose_positive ignoring the counts fails this."""
    from pyimagesearch.core.evaluation import choose_positive

    taken = choose_positive(["defect", "ok"], None, [20, 380])
    assert taken.index == 0 and taken.reason.startswith("positive class 'defect', the rarer")
    assert choose_positive(["ok", "scratch"], None, [380, 20]).index == 1
    assert choose_positive(["a", "b"], None, [10, 10]).index == 1  # a tie: the second
    assert choose_positive(["defect", "ok"], "ok", [20, 380]).index == 1  # asked for
