"""Patient-grouped splits: no patient's cells on both sides of the train/test line."""

import zipfile
from pathlib import Path

import pytest

from pyimagesearch import build_dataset
from pyimagesearch.build_dataset import CLASSES, patient_of, patient_split
from tests.conftest import write_image


def test_patient_ids_from_nih_file_names():
    assert patient_of("C33P1thinF_IMG_20150619_114756a_cell_179.png") == "P1"
    assert patient_of("C100P61ThinF_IMG_20150918_144104_cell_170.png") == "P61"
    assert patient_of("C238NThinF_IMG_20151207_114038_cell_83.png") == "C238"
    assert patient_of("C1_thinF_IMG_20150604_104722_cell_9.png") == "C1"
    assert patient_of("my_own_cell.png") is None


def nih_like_files(
    infected: int = 20, healthy: int = 6, per_patient: int = 5
) -> dict[str, list[str]]:
    files: dict[str, list[str]] = {name: [] for name in CLASSES}
    for p in range(1, infected + 1):
        for i in range(per_patient):
            files["Parasitized"].append(f"C{p + 50}P{p}thinF_IMG_x_cell_{i}.png")
            files["Uninfected"].append(f"C{p + 50}P{p}thinF_IMG_x_cell_{i + 100}.png")
    for c in range(1, healthy + 1):
        for i in range(per_patient * 2):
            files["Uninfected"].append(f"C{c}NThinF_IMG_x_cell_{i}.png")
    return files


def test_patient_split_keeps_each_patient_in_one_split_and_uses_every_file(capsys):
    files = nih_like_files()
    split = patient_split(files, (0.8, 0.1, 0.1), seed=1)
    owners: dict[str, str] = {}
    for split_name, classes in split.items():
        for name in CLASSES:
            assert classes[name], f"{split_name}/{name} is empty"
            for file_name in classes[name]:
                assert owners.setdefault(patient_of(file_name), split_name) == split_name
    for name in CLASSES:
        assert sorted(f for s in split.values() for f in s[name]) == sorted(files[name])
    assert "patients" in capsys.readouterr().out
    assert patient_split(files, (0.8, 0.1, 0.1), seed=1) == split  # reproducible


def test_files_without_patient_ids_fall_back_with_a_warning(capsys):
    files = {name: [f"{name}_{i}.png" for i in range(20)] for name in CLASSES}
    split = patient_split(files, (0.5, 0.25, 0.25), seed=0)
    assert [len(split[s]["Parasitized"]) for s in ("training", "validation", "testing")] == [
        10,
        5,
        5,
    ]
    assert "no patient id" in capsys.readouterr().err


def test_zip_source_builds_a_patient_split(tmp_path: Path):
    source = tmp_path / "cell_images"
    for name, names in nih_like_files(infected=10, healthy=2, per_patient=2).items():
        for file_name in names:
            write_image(source / name / file_name, size=(8, 8))
    archive = tmp_path / "cell_images.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        for path in source.rglob("*.png"):
            handle.write(path, path.relative_to(tmp_path))
    output = tmp_path / "out"
    assert (
        build_dataset.main(
            ["--source", str(archive), "--output", str(output), "--split", "patient"]
        )
        == 0
    )
    written = sorted(p.name for p in output.rglob("*.png"))
    assert written == sorted(p.name for p in source.rglob("*.png"))
    assert archive.exists()


def test_bad_fractions_are_refused(tmp_path: Path):
    with pytest.raises(build_dataset.UserError, match="add up to 1"):
        build_dataset.main(
            ["--source", str(tmp_path), "--split", "patient", "--fractions", "0.5", "0.5", "0.5"]
        )
