"""A Python caller gets the commands' lines in the tutorial's format, and can silence them
with the standard logging module."""

import io
import logging
import re
import sys

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


class FakeTerminal(io.StringIO):
    """stdout and stderr on one terminal, as an interactive training run has them."""

    def isatty(self) -> bool:
        return True


def screen(text: str) -> list[str]:
    """The lines a terminal shows for TEXT: "\\r" returns to the line's start, the ANSI
    "erase in line" clears the rest of it, other characters overwrite."""
    lines, line, column = [], [], 0
    for part in re.split(r"(\r|\n|\x1b\[K)", text):
        if part == "\n":
            lines, line, column = lines + ["".join(line)], [], 0
        elif part == "\r":
            column = 0
        elif part == "\x1b[K":
            del line[column:]
        else:
            for char in part:
                line[column : column + 1] = [char]
                column += 1
    return lines + (["".join(line)] if line else [])


def test_a_warning_on_a_terminal_starts_its_own_line_after_a_progress_bar(monkeypatch):
    terminal = FakeTerminal()
    monkeypatch.setattr(sys, "stdout", terminal)
    monkeypatch.setattr(sys, "stderr", terminal)
    report.info("training")
    report.warning("before the bar")  # after a whole line: no blank line
    sys.stdout.write("Epoch 1/2\n\r 3/10 ━━━━━━━━━━━━ 1s 90ms/step - loss: 0.69")  # mid-line
    report.warning("during the bar")
    report.error("and an error")
    sys.stdout.write("\r 4/10 ━━━━━━━━━━━━ 1s 88ms/step - loss: 0.68\n")  # the bar redraws
    assert screen(terminal.getvalue()) == [
        "[INFO] training",
        "[WARNING] before the bar",
        "Epoch 1/2",
        "[WARNING] during the bar",
        "[ERROR] and an error",
        " 4/10 ━━━━━━━━━━━━ 1s 88ms/step - loss: 0.68",
    ]


def test_a_redirected_log_gets_no_terminal_codes(monkeypatch):
    out, err = io.StringIO(), io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.setattr(sys, "stderr", err)
    sys.stdout.write("Epoch 1/2 ")
    report.warning("w")
    assert (out.getvalue(), err.getvalue()) == ("Epoch 1/2 ", "[WARNING] w\n")
