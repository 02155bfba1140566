"""studies.patients: a recipe judged on patients its training never saw.

One run on a small synthetic NIH-like source (file names carry the patient as in the NIH
set), one seed, one epoch: the held-out patients never reach training, every image of
theirs is judged, and the figures are what the predictions say. The study runs in fresh
processes (its command, or its hold_out under ``python -c``): the tests import no study."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import run_script

PATIENT = re.compile(r"^C\d+(P\d+)|^(C\d+)")


def patient(file_name: str) -> str:
    """The NIH rule, written here on its own: P<n> of an infected patient, else the slide."""
    match = PATIENT.search(file_name)
    return match.group(1) or match.group(2)


def cell(parasite: bool, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    pixels = np.zeros((24, 24, 3), dtype=np.uint8)
    rows, cols = np.mgrid[:24, :24]
    pixels[(rows - 12) ** 2 + (cols - 12) ** 2 < 80] = rng.integers(170, 230, 3)
    if parasite:
        pixels[(rows - 10) ** 2 + (cols - 13) ** 2 < 6] = (90, 30, 120)
    return Image.fromarray(pixels)


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    """24 infected patients (20 Parasitized and 12 Uninfected cells each) and 12 healthy
    slides (20 cells each): 480 + 528 images, enough for the 500-image tutorial split
    from two thirds of them."""
    root = tmp_path_factory.mktemp("nih") / "cell_images"
    for name in ("Parasitized", "Uninfected"):
        (root / name).mkdir(parents=True)
    for p in range(1, 25):
        for i in range(20):
            cell(True, p * 100 + i).save(root / "Parasitized" / f"C{p + 30}P{p}thinF_{i}.png")
        for i in range(12):
            cell(False, p * 100 + 50 + i).save(root / "Uninfected" / f"C{p + 30}P{p}thinF_{i}.png")
    for slide in range(200, 212):
        for i in range(20):
            cell(False, slide * 100 + i).save(root / "Uninfected" / f"C{slide}NThinF_{i}.png")
    return root


def read(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_the_held_out_patients_are_judged_and_never_trained_on(source: Path, tmp_path: Path):
    output = tmp_path / "judged"
    result = run_script(
        "-m", "studies.patients", "--source", str(source), "--seeds", "3", "--output",
        str(output), "--epochs", "1", "--image-size", "32", timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    held = {row["patient"] for row in read(output / "held-out.csv")}
    split = read(output / "seed-3-split.csv")
    assert {patient(row["file"]) for row in split}.isdisjoint(held)
    sizes = {name: sum(row["split"] == name for row in split) for name in ("training",
             "validation", "testing")}  # fmt: skip
    assert sizes == {"training": 360, "validation": 40, "testing": 100}

    # Every image of the held-out patients, and nothing else, was judged.
    all_files = [(n, f.name) for n in ("Parasitized", "Uninfected") for f in (source / n).iterdir()]
    expected = sorted((n, f) for n, f in all_files if patient(f) in held)
    predictions = read(output / "seed-3-predictions.csv")
    assert sorted((row["label"], row["file"]) for row in predictions) == expected
    assert 0.25 < len(expected) / len(all_files) < 0.42  # about a third held out
    assert {patient(f) for _, f in expected} == held

    # The figures are the predictions' own (Parasitized is the positive class).
    label = np.array([row["label"] == "Parasitized" for row in predictions])
    said = np.array([row["predicted"] == "Parasitized" for row in predictions])
    figures = json.loads((output / "summary.json").read_text())["seeds"][0]
    assert figures["images"] == len(predictions)
    assert figures["accuracy"] == pytest.approx(np.mean(label == said))
    assert figures["sensitivity"] == pytest.approx(said[label].mean())
    assert figures["specificity"] == pytest.approx((~said[~label]).mean())
    assert f"| 3 | {figures['accuracy']:.3f} |" in result.stdout
    # What it trained in, resolved ("auto" is bfloat16 on a CPU with AMX only).
    trained_in = figures["training_precision"]
    assert (
        trained_in in ("float32", "mixed_bfloat16") and f"Trained in {trained_in}." in result.stdout
    )
    # The seed's own training output and curve, to tell a plateau from a bad judge.
    assert "[INFO] training network for 1 epochs" in (output / "seed-3-save_model.log").read_text()
    assert (output / "seed-3-plot.png").read_bytes().startswith(b"\x89PNG")


HOLD_OUT_BOTH_ORDERS = """
import json, sys
from studies.patients import hold_out
files = json.loads(sys.argv[1])
shuffled = {n: list(reversed(names)) for n, names in files.items()}
print(json.dumps([hold_out(files)[1], {n: sorted(f) for n, f in hold_out(shuffled)[1].items()}]))
"""


def test_the_held_out_patients_are_the_same_whatever_the_order(source: Path):
    """(Mutation: shuffling the entries with an unseeded generator before the split.)"""
    files = {n: sorted(f.name for f in (source / n).iterdir()) for n in ("Parasitized",
             "Uninfected")}  # fmt: skip
    result = run_script("-c", HOLD_OUT_BOTH_ORDERS, json.dumps(files), timeout=120)
    assert result.returncode == 0, result.stderr
    in_order, reversed_order = json.loads(result.stdout)
    assert in_order == reversed_order
    assert 0 < sum(map(len, in_order.values())) < sum(map(len, files.values()))


@pytest.mark.parametrize(
    "args, message",
    [
        (["--source", "nowhere"], "holds no Parasitized/ and Uninfected/"),
        (["--seed", "3"], "--seed is set per seed by this command"),
        (["--seeds", "x"], "expected seeds such as 1-5"),
    ],
)
def test_bad_input_is_one_line_and_status_2(source: Path, args: list[str], message: str):
    args = args if args[0] == "--source" else ["--source", str(source), *args]
    result = run_script("-m", "studies.patients", *args, timeout=120)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
