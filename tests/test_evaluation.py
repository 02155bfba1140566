"""The figures printed against folder labels: metrics of any classes and doubtful labels."""

import numpy as np
import pytest

from pyimagesearch.core.errors import UserError
from pyimagesearch.core.evaluation import (
    choose_positive,
    classification_metrics,
    clinical_metrics,
    confident_errors,
    print_report,
)

CLASSES = ["Parasitized", "Uninfected"]


def probabilities(p_parasitized: list[float]) -> np.ndarray:
    p = np.asarray(p_parasitized)
    return np.stack([p, 1 - p], axis=1)


def test_sensitivity_specificity_auc_follow_the_parasitized_class():
    labels = np.array([0, 0, 0, 0, 1, 1])  # 4 Parasitized, 2 Uninfected
    scores = probabilities([0.9, 0.8, 0.7, 0.3, 0.4, 0.6])
    metrics = clinical_metrics(labels, scores, CLASSES)
    assert metrics["sensitivity"] == pytest.approx(3 / 4)
    assert metrics["specificity"] == pytest.approx(1 / 2)
    assert metrics["auc"] == pytest.approx(6 / 8)  # 6 of the 8 (P, U) pairs ranked right


def test_a_binary_set_with_other_names_gets_a_positive_class_and_says_which():
    labels = np.array([0, 0, 0, 0, 1, 1])  # 4 cat, 2 dog
    scores = probabilities([0.9, 0.8, 0.7, 0.3, 0.4, 0.6])
    # No --positive-class: the second class in index order, with a note saying so.
    positive = choose_positive(["cat", "dog"])
    assert positive.index == 1 and "'dog', the second in index order" in positive.reason
    metrics = clinical_metrics(labels, scores, ["cat", "dog"])
    assert metrics["sensitivity"] == pytest.approx(1 / 2)  # dogs found
    assert metrics["specificity"] == pytest.approx(3 / 4)  # cats cleared
    assert metrics["auc"] == pytest.approx(6 / 8)  # the same pairs, seen from the dog side
    # --positive-class cat gives the cat's view, the same figures as Parasitized above.
    cat = choose_positive(["cat", "dog"], "cat")
    assert cat.index == 0 and cat.reason == ""
    assert clinical_metrics(labels, scores, ["cat", "dog"], cat.index)["sensitivity"] == 0.75
    with pytest.raises(UserError, match="'bird' is not one of the classes"):
        choose_positive(["cat", "dog"], "bird")


def test_a_multi_class_set_reports_accuracy_and_macro_one_vs_rest_auc():
    labels = np.array([0, 1, 2, 0, 1, 2])
    scores = np.array(
        [[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8],
         [0.2, 0.7, 0.1], [0.1, 0.8, 0.1], [0.3, 0.3, 0.4]]
    )  # fmt: skip
    names = ["a", "b", "c"]
    assert choose_positive(names).index is None
    metrics = classification_metrics(labels, scores, names)
    assert metrics["accuracy"] == pytest.approx(5 / 6)
    assert set(metrics) == {"accuracy", "balanced_accuracy", "auc_macro_ovr"}
    from sklearn.metrics import roc_auc_score

    expected = np.mean([roc_auc_score(labels == k, scores[:, k]) for k in range(3)])
    assert metrics["auc_macro_ovr"] == pytest.approx(expected)
    assert metrics["auc_macro_ovr"] < 1


def test_confident_errors_are_wrong_and_sure_most_sure_first():
    labels = np.array([0, 0, 1, 1, 0])
    scores = probabilities([0.05, 0.95, 0.92, 0.2, 0.3])
    assert confident_errors(labels, scores).tolist() == [0, 2]  # 0.95 wrong, then 0.92
    assert confident_errors(labels, scores, threshold=0.6).tolist() == [0, 2, 4]


def test_report_names_the_doubtful_files_neutrally_on_a_large_enough_set(capsys):
    labels = np.array([0, 1, 1] + [0] * 97)
    scores = probabilities([0.99, 0.97, 0.1] + [0.8] * 97)
    print_report([f"{i}.png" for i in range(100)], labels, scores, CLASSES)
    out = capsys.readouterr().out
    assert "99/100 correct" in out
    assert (
        "[INFO] 1 error was made with confidence >= 0.90 (an overconfident model or a "
        "wrong label); most confident first:" in out
    )
    assert "0.970 Parasitized, folder says Uninfected: 1.png" in out
    assert "sensitivity: 1.0000  specificity: 0.5000" in out


def test_no_confident_error_verdict_on_a_small_set(capsys):
    labels = np.array([0, 1, 1])
    print_report(["a.png", "b.png", "c.png"], labels, probabilities([0.99, 0.97, 0.1]), CLASSES)
    out = capsys.readouterr().out
    assert "2/3 correct" in out and "sensitivity: 1.0000  specificity: 0.5000" in out
    assert "confidence" not in out and "b.png" not in out


def test_the_text_confusion_matrix_has_row_and_column_headers(capsys):
    names = [f"digit_{d}" for d in range(10)]
    labels = np.arange(10).repeat(2)
    scores = np.eye(10)[labels]
    scores[0] = np.eye(10)[3]  # one digit_0 called digit_3
    print_report([f"{i}.png" for i in range(20)], labels, scores, names)
    out = capsys.readouterr().out.splitlines()
    header = next(i for i, line in enumerate(out) if "true \\ predicted" in line)
    assert out[header].split()[-10:] == names
    row = out[header + 1].split()
    assert row[0] == "digit_0" and row[1:] == ["1", "0", "0", "1", "0", "0", "0", "0", "0", "0"]
    # load_model.py's report: balanced accuracy, then the macro AUC (issue 39).
    assert any(line.startswith("[INFO] balanced_accuracy: 0.9500  auc_macro_ovr: ") for line in out)


def test_balanced_accuracy_is_the_mean_of_the_classes_recalls():
    """A model that answers the large class for all but one image of the small one:
    accuracy 0.95, balanced accuracy 0.75 (the mean of 1/2 and 1; a class absent from
    the labels is left out), as scikit-learn's balanced_accuracy_score. (Mutation: the
    plain accuracy in its place fails this.)"""
    from sklearn.metrics import balanced_accuracy_score

    labels = np.array([0] * 2 + [1] * 18 + [2] * 0)
    scores = np.tile([0.1, 0.8, 0.1], (20, 1))
    scores[0] = [0.9, 0.05, 0.05]
    metrics = classification_metrics(labels, scores, ["a", "b", "c"])
    assert metrics["accuracy"] == pytest.approx(19 / 20)
    assert metrics["balanced_accuracy"] == pytest.approx(
        balanced_accuracy_score(labels, scores.argmax(axis=1))
    )
    assert metrics["balanced_accuracy"] == pytest.approx((1 / 2 + 1) / 2)
