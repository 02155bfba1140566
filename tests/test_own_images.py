"""A reader's own images: any class names, the common folder layouts, any number of classes.

The non-malaria sets are made from scikit-learn's handwritten digits (a pip package's
own data, no download) by ``pyimagesearch.example_sets``: ten classes of small grey
images, and a binary set whose classes are not the malaria ones.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import run_script, write_image

from pyimagesearch.core.errors import UserError, run_command
from pyimagesearch.example_sets import write_set

MALARIA_WORDS = re.compile(r"malaria|\bcells?\b|patient|parasiti", re.IGNORECASE)


def class_folders(root: Path, classes: dict[str, int], prefix: str = "") -> Path:
    for label, (name, count) in enumerate(classes.items()):
        for i in range(count):
            write_image(
                root / name / f"{prefix}{name}_{i:03d}.png", size=(20, 20), seed=label * 997 + i
            )
    return root


def split_folders(root: Path, names: tuple[str, str, str], count: int = 3) -> Path:
    for split in names:
        class_folders(root / split, {"cat": count, "dog": count}, prefix=split)
    return root


# ---------------------------------------------------------------- layouts and the split


@pytest.mark.parametrize(
    "names",
    [("training", "validation", "testing"), ("train", "val", "test"), ("train", "valid", "test")],
)
def test_split_layouts_are_read_as_they_are(tmp_path: Path, names):
    from pyimagesearch.training.data import scan_dataset

    splits, layout = scan_dataset(split_folders(tmp_path / "d", names))
    assert list(splits) == ["training", "validation", "testing"]
    assert layout == {"layout": "split", "folders": dict(zip(splits, names, strict=True))}
    for split, folder in zip(splits.values(), names, strict=True):
        assert split.class_names == ["cat", "dog"]
        assert {Path(p).parent.parent.name for p in split.paths} == {folder}


def test_a_flat_folder_is_split_seeded_and_stratified_by_class(tmp_path: Path, capsys):
    from pyimagesearch.training.data import scan_dataset

    root = class_folders(tmp_path / "flat", {"cat": 40, "dog": 20, "eel": 10})
    splits, layout = scan_dataset(root, 0.2, 0.1, split_seed=3)
    assert "is a flat folder of 3 classes: split 70%/20%/10% by file" in capsys.readouterr().out
    rule = {k: layout[k] for k in ("layout", "fractions", "group_pattern", "split_seed")}
    assert rule == {"layout": "flat", "fractions": [0.7, 0.2, 0.1], "group_pattern": None,
                    "split_seed": 3}  # fmt: skip
    assert layout["images"] == 70  # with the files' digest: what --split test checks
    every = [p for s in splits.values() for p in s.paths]
    assert len(every) == len(set(every)) == 70
    # Each class keeps its share in each split (stratified), to the image.
    counts = {n: np.bincount(s.labels, minlength=3).tolist() for n, s in splits.items()}
    assert counts == {"training": [28, 14, 7], "validation": [8, 4, 2], "testing": [4, 2, 1]}
    again, _ = scan_dataset(root, 0.2, 0.1, split_seed=3)
    other, _ = scan_dataset(root, 0.2, 0.1, split_seed=4)
    assert again["testing"].paths == splits["testing"].paths
    assert other["testing"].paths != splits["testing"].paths


def test_a_group_pattern_keeps_each_group_in_one_split(tmp_path: Path):
    from pyimagesearch.training.data import scan_dataset

    root = tmp_path / "flat"
    for person in range(12):
        for label, name in enumerate(("cat", "dog")):
            for shot in range(3):
                write_image(root / name / f"p{person:02d}_{name}{shot}.png", size=(8, 8),
                            seed=person * 10 + label * 3 + shot)  # fmt: skip
    splits, layout = scan_dataset(root, 0.25, 0.25, group_pattern=r"^(p\d+)_")
    owner = {}
    for name, split in splits.items():
        for path in split.paths:
            person = Path(path).name[:3]
            assert owner.setdefault(person, name) == name, f"{person} is in two splits"
    assert layout["group_pattern"] == r"^(p\d+)_"
    assert sorted(len({Path(p).name[:3] for p in s.paths}) for s in splits.values()) == [3, 3, 6]


def test_the_nih_patient_rule_is_the_default_group_pattern_and_matches_every_real_name(
    malaria_source: Path,
):
    """One rule for build_dataset, save_model.py and crossval: the regex gives each of the
    real files the patient the file-name convention names (P<n> infected, C<n> healthy)."""
    from pyimagesearch.core.splitting import NIH_GROUP_PATTERN, default_group_pattern, groups_for

    assert default_group_pattern(["Parasitized", "Uninfected"]) == NIH_GROUP_PATTERN
    assert default_group_pattern(["cat", "dog"]) is None
    names = sorted(os.listdir(malaria_source / "Parasitized"))[:300]
    names += sorted(os.listdir(malaria_source / "Uninfected"))[-300:]
    groups = groups_for(names, NIH_GROUP_PATTERN)
    for name, group in zip(names, groups, strict=True):
        slide, patient = re.match(r"C(\d+)(?:P(\d+))?", name).groups()
        assert group == (f"P{int(patient)}" if patient else f"C{int(slide)}")
    assert groups_for(["C33P1thinF_IMG_1_cell_2.png", "C238NThinF_x.png"], NIH_GROUP_PATTERN) == [
        "P1",
        "C238",
    ]


@pytest.mark.parametrize(
    ("make", "extra", "message"),
    [
        (lambda root: None, [], "does not exist or is not a folder"),
        (lambda root: root.mkdir(), [], "has no sub-folders; expected training/validation"),
        (lambda root: split_folders(root, ("train", "test", "x")), [],
         "has train/, test/ but no validation/; expected"),
        (lambda root: class_folders(root, {"cat": 3}), [], "at least two classes"),
        (lambda root: split_folders(root, ("train", "val", "test")), ["--val-split", "0.2"],
         "split a flat folder"),
        (lambda root: class_folders(root, {"cat": 3, "dog": 3}), ["--group-pattern", "(p"],
         "is not a regular expression"),
        (lambda root: (class_folders(root, {"cat": 3}), (root / "dog").mkdir()), [],
         "holds no image files"),
    ],
)  # fmt: skip
def test_a_bad_layout_is_one_line_and_exit_2(tmp_path: Path, capsys, make, extra, message):
    import save_model

    root = tmp_path / "data"
    make(root)
    argv = ["--dataset", str(root), "--model", str(tmp_path / "m.keras"),
            "--plot", str(tmp_path / "p.png"), *extra]  # fmt: skip
    assert run_command(save_model.main, argv) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith("[ERROR] ") and message in error[0]
    # The user's own folder never gets the advice to download the NIH set into it.
    assert "build_dataset" not in error[0] and "NIH" not in error[0]


# ------------------------------------------------------------------- build_dataset


def test_build_dataset_splits_a_users_folder_copying_never_moving(tmp_path: Path):
    source = tmp_path / "photos"
    for person in range(10):
        for name in ("cat", "dog"):
            for shot in range(2):
                write_image(source / name / f"p{person}_{shot}.png", size=(8, 8), seed=person)
    before = sorted(str(p.relative_to(source)) for p in source.rglob("*.png"))
    output = tmp_path / "split"
    result = run_script("-m", "pyimagesearch.build_dataset", "--source", str(source), "--output",
                        str(output), "--fractions", "0.6", "0.2", "0.2",
                        "--group-pattern", r"^(p\d+)_")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "[INFO] copying 40 images (copies: editing one never touches the original" in (
        result.stdout
    )
    assert "WARNING: All log messages" not in result.stderr  # no TensorFlow for a local folder
    assert sorted(str(p.relative_to(source)) for p in source.rglob("*.png")) == before
    owners: dict[str, str] = {}
    for split in ("training", "validation", "testing"):
        assert sorted(d.name for d in (output / split).iterdir()) == ["cat", "dog"]
        for path in (output / split).rglob("*.png"):
            assert owners.setdefault(path.name.split("_")[0], split) == split
            assert path.stat().st_ino != (source / path.parent.name / path.name).stat().st_ino
    assert sorted(owners.values()).count("training") == 6
    linked = tmp_path / "linked"
    result = run_script("-m", "pyimagesearch.build_dataset", "--source", str(source),
                        "--output", str(linked), "--link")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "hard-linking 40 images" in result.stdout
    some = next((linked / "training").rglob("*.png"))
    assert some.stat().st_ino == (source / some.parent.name / some.name).stat().st_ino


def test_build_dataset_refuses_what_it_cannot_split_in_one_line(tmp_path: Path):
    split = split_folders(tmp_path / "already", ("train", "val", "test"))
    flat = class_folders(tmp_path / "flat", {"cat": 4, "dog": 4})
    for source, extra, message in (
        (split, [], "is split already (test/, train/, val/)"),
        (flat, ["--split", "tutorial"], "--split tutorial is for the NIH classes"),
        (tmp_path / "nowhere", [], "does not exist"),
    ):
        result = run_script("-m", "pyimagesearch.build_dataset", "--source", str(source),
                            "--output", str(tmp_path / "out"), *extra)  # fmt: skip
        assert result.returncode == 2, result.stderr
        assert result.stderr.strip().splitlines() == [result.stderr.strip()]
        assert message in result.stderr


def test_build_dataset_takes_a_zip_of_class_folders(tmp_path: Path):
    flat = class_folders(tmp_path / "flat", {"cat": 5, "dog": 5})
    archive = tmp_path / "pets.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        for path in flat.rglob("*.png"):
            handle.write(path, path.relative_to(flat))
    result = run_script("-m", "pyimagesearch.build_dataset", "--source", str(archive),
                        "--output", str(tmp_path / "out"))  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert len(list((tmp_path / "out").rglob("*.png"))) == 10


# ------------------------------------------------- the whole pair on a 10-class set


def read_metadata(model: Path) -> dict:
    from pyimagesearch.training.serialization import read_metadata

    return read_metadata(model)


def test_save_model_trains_a_flat_10_class_folder_and_reads_right(digits_run, digits: Path):
    model, result = digits_run
    out = result.stdout
    found = [int(n) for n in re.findall(r"Found (\d+) images belonging to 10 classes\.", out)]
    assert len(found) == 3 and sum(found) == 1797 and found[0] > 7 * found[2]
    assert "is a flat folder of 10 classes: split 80%/10%/10% by file" in out
    assert re.search(r"auc_macro_ovr: 0\.9\d{3}", out), out[-2000:]
    assert not MALARIA_WORDS.search(out + result.stderr), MALARIA_WORDS.search(out).group(0)
    metadata = read_metadata(model)
    assert metadata["class_names"] == [f"digit_{d}" for d in range(10)]
    provenance = metadata["provenance"]
    assert provenance["dataset"] == "digits"  # its name, never the training machine's path
    assert provenance["layout"]["layout"] == "flat" and provenance["augmentation"] == "none"
    # The default recipe normalises stain for the malaria cells only: other images keep
    # their colours, which may be what tells their classes apart.
    assert provenance["stain"] == "none" and "stain normalisation: none (auto: not the NIH" in out
    # Four epochs at 32 px (the README's 12-epoch figure is higher); chance is 0.1.
    assert provenance["final_metrics"]["test_accuracy"] >= 0.9


def test_load_model_reports_every_class_with_headers_and_no_malaria_words(
    digits_run, digits: Path, tmp_path: Path
):
    model, _ = digits_run
    result = run_script("load_model.py", "--images", str(digits), "--model", str(model),
                        "-n", "120", "--seed", "2", "--explain", "--output",
                        str(tmp_path / "montage.png"), "--confusion", str(tmp_path / "cm.png"),
                        "--csv", str(tmp_path / "p.csv"))  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert re.search(r"true \\ predicted\s+" + r"\s+".join(f"digit_{d}" for d in range(10)), out)
    assert re.search(r"^\[INFO\] balanced_accuracy: [01]\.\d{4}  auc_macro_ovr: ", out, re.M), out
    assert not MALARIA_WORDS.search(out + result.stderr)
    for name in ("montage.png", "cm.png", "p.csv"):
        assert (tmp_path / name).stat().st_size > 0


def test_crossval_and_audit_on_a_10_class_set_speak_of_groups(digits: Path, tmp_path: Path):
    cv = tmp_path / "cv"
    # 800 of the 1,797 images, 2 folds, 3 epochs: a fifth of the training of the README's
    # example, enough to learn well above chance (measured: accuracy 0.46, AUC 0.92).
    result = run_script("-m", "pyimagesearch.crossval", "--dataset", str(digits), "--output",
                        str(cv), "--folds", "2", "--limit", "800", "--epochs", "3",
                        "--batch-size", "16", "--image-size", "32", "--augmentation", "none",
                        "--seed", "1")  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    summary = (cv / "summary.md").read_text()
    assert not MALARIA_WORDS.search(summary + result.stdout + result.stderr)
    assert "diagnosed" not in summary and "auc_macro_ovr" in summary
    mean = re.search(  # accuracy, (balanced accuracy,) macro AUC
        r"\| mean \+/- std \| \| \| (0\.\d+) \+/- \S+ \| 0\.\d+ \+/- \S+ \| (0\.\d+) \+/-", summary
    )
    assert mean, summary  # accuracy and macro AUC well above chance (0.1 and 0.5)
    assert float(mean.group(1)) > 0.3 and float(mean.group(2)) > 0.8, summary
    assert len((cv / "oof.csv").read_text().splitlines()) == 1 + 800  # each judged once
    assert (cv / "oof.csv").read_text().splitlines()[0].split(",")[2] == "group"
    audit = tmp_path / "audit"
    result = run_script("-m", "pyimagesearch.audit", "--oof", str(cv / "oof.csv"),
                        "--output", str(audit), "--top", "16")  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert not MALARIA_WORDS.search(result.stdout + result.stderr)
    # Folds at about 0.46 accuracy: the audit says its suspects are mostly their mistakes.
    assert "[WARNING] the fold models are weak" in result.stderr
    assert (audit / "AUDIT.txt").read_text().startswith("CAVEAT: the fold models are weak")
    assert (audit / "issues.csv").read_text().splitlines()[0].split(",")[3] == "group"
    assert (audit / "per_group.csv").is_file() and (audit / "suspects-01.png").is_file()


# --------------------------------------------- a binary set with other class names


@pytest.fixture(scope="session")
def zero_one(tmp_path_factory) -> Path:
    """The digits 0 and 1 as classes 'one' and 'zero', in the train/val/test layout."""
    scratch = tmp_path_factory.mktemp("zero_one")
    write_set("zero-one", scratch / "flat")
    built = scratch / "built"
    result = run_script("-m", "pyimagesearch.build_dataset", "--source", str(scratch / "flat"),
                        "--output", str(built), "--fractions", "0.6", "0.2", "0.2")  # fmt: skip
    assert result.returncode == 0, result.stderr
    root = scratch / "zero-one"
    root.mkdir()
    for old, new in (("training", "train"), ("validation", "val"), ("testing", "test")):
        shutil.move(built / old, root / new)
    return root


def test_positive_class_gives_sensitivity_specificity_and_auc_everywhere(
    zero_one: Path, tmp_path: Path, capsys
):
    model = tmp_path / "zero-one.keras"
    result = run_script("save_model.py", "--dataset", str(zero_one), "--model", str(model),
                        "--plot", str(tmp_path / "p.png"), "--image-size", "32", "--epochs",
                        "2", "--augmentation", "none", "--positive-class", "one",
                        "--seed", "1")  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    line = (
        r"positive class 'one': (balanced_accuracy: [01]\.\d{4}  )?"
        r"sensitivity: [01]\.\d{4}  specificity: [01]\.\d{4}  auc: "
    )
    assert re.search(line, result.stdout)
    metadata = read_metadata(model)
    assert metadata["positive_class"] == "one"
    assert {"test_sensitivity", "test_specificity", "test_auc"} <= set(
        metadata["provenance"]["final_metrics"]
    )
    # load_model.py follows the model's positive class, or --positive-class (run here, in
    # this process: the fresh-process load is checked elsewhere).
    import load_model as load_script

    argv = ["-i", str(zero_one / "test"), "-m", str(model), "-n", "0",
            "-o", str(tmp_path / "m.png")]  # fmt: skip
    assert run_command(load_script.main, argv) == 0
    assert re.search(line, capsys.readouterr().out)
    assert run_command(load_script.main, [*argv, "--positive-class", "zero"]) == 0
    assert re.search(line.replace("one", "zero"), capsys.readouterr().out)
    assert run_command(load_script.main, [*argv, "--positive-class", "two"]) == 2
    assert "'two' is not one of the classes" in capsys.readouterr().err
    # crossval reports them per fold, for the class asked for (one fold of two is enough),
    # on a copy whose classes share file names (0000.png in one/ and in zero/), as camera
    # folders do: each file is its own group, its class folder part of its name.
    shared = tmp_path / "shared-names"
    shutil.copytree(zero_one, shared)
    for folder in shared.glob("*/*"):
        for number, image in enumerate(sorted(folder.glob("*.png"))):
            image.rename(folder / f"{number:04d}.png")
    cv = tmp_path / "cv"
    folds = run_script("-m", "pyimagesearch.crossval", "-d", str(shared), "-o", str(cv),
                       "--folds", "2", "--only", "1", "--epochs", "1", "--image-size", "32",
                       "--positive-class", "one")  # fmt: skip
    assert folds.returncode == 0, folds.stderr[-3000:]
    assert "pooling their 360 images" in folds.stdout
    header = (cv / "summary.md").read_text().splitlines()[2]
    assert "| accuracy | balanced_accuracy | sensitivity | specificity | auc |" in header
    results = json.loads((cv / "summary.json").read_text())["folds"]
    assert len(results) == 1 and {"sensitivity", "specificity", "auc"} <= set(results[0]["metrics"])
    assert "folds stratified by class, one file a group" in folds.stdout
    with open(cv / "oof.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len({r["group"] for r in rows}) == len(rows) == results[0]["images"]["testing"]
    assert {r["group"].split("/")[1] for r in rows} == {"one", "zero"}  # file:test/one/0003.png
    assert (cv / "summary.md").read_text().startswith("Stratified 2-fold cross-validation")


def test_without_a_positive_class_a_binary_set_says_which_it_took():
    from pyimagesearch.core.evaluation import choose_positive

    with pytest.raises(UserError):
        choose_positive(["one", "zero"], "Parasitized")
    assert choose_positive(["one", "zero"]).reason.startswith("positive class 'zero'")
