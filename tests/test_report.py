"""A Python caller gets the commands' lines in the tutorial's format, and can silence them
with the standard logging module."""

import logging

import numpy as np

from pyimagesearch.core import report
from pyimagesearch.core.evaluation import print_report


def classify_four(capsys) -> tuple[str, str]:
    labels = np.array([0, 0, 1, 1])
    probabilities = np.array([[0.9, 0.1], [0.2, 0.8], [0.3, 0.7], [0.1, 0.9]])
    print_report(["a", "b", "c", "d"], labels, probabilities, ["cat", "dog"])
    report.warning("a warning")
    captured = capsys.readouterr()
    return captured.out, captured.err


def test_lines_use_the_tutorial_format_and_logging_silences_them(capsys):
    out, err = classify_four(capsys)
    assert "[INFO] 3/4 correct where the folder names the class" in out
    assert "precision" in out  # the report table, unprefixed
    assert err == "[WARNING] a warning\n"
    logger = logging.getLogger("pyimagesearch")
    try:
        logger.setLevel(logging.ERROR)
        assert classify_four(capsys) == ("", "")
    finally:
        logger.setLevel(logging.INFO)
