"""The figures printed against folder labels: clinical metrics and doubtful labels."""

import numpy as np
import pytest

from pyimagesearch.evaluation import clinical_metrics, confident_errors, print_report

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
    assert clinical_metrics(labels, scores, ["cat", "dog"]) == {}


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
        "[INFO] 1 errors were made with confidence >= 0.90 (an overconfident model or a "
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
