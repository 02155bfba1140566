"""One scan, one split: build_dataset --source and save_model.py read a flat folder the
same way (nested folders, hidden and AppleDouble files, the image gate), draw the same
split, and load_model.py --split classifies exactly the split training drew."""

import csv
import shutil
from pathlib import Path

import pytest
from conftest import run_script

from pyimagesearch.example_sets import write_set


@pytest.fixture(scope="module")
def messy(tmp_path_factory) -> Path:
    """scikit-learn's 0 and 1 digits as a flat folder, with what real folders hold."""
    root = tmp_path_factory.mktemp("messy") / "parts"
    write_set("zero-one", root)
    classes = sorted(d.name for d in root.iterdir())
    first = sorted((root / classes[0]).glob("*.png"))
    nested = root / classes[0] / "more"
    nested.mkdir()
    for image in first[:15]:  # 15 images one folder down: they count for their class
        shutil.move(image, nested / image.name)
    (root / classes[0] / "._w00_0001.png").write_bytes(b"\x00\x05\x16\x07" + b"\x00" * 80)
    (root / classes[0] / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (root / classes[1] / "empty.png").write_bytes(b"")
    (root / classes[1] / "notes.jpg").write_text("not an image\n")
    whole = sorted((root / classes[1]).glob("w*.png"))[0].read_bytes()
    (root / classes[1] / "truncated.png").write_bytes(whole[: len(whole) // 2])
    return root


def test_build_dataset_and_save_model_share_the_scan_and_the_split(messy: Path, tmp_path: Path):
    built = tmp_path / "built"
    made = run_script("-m", "pyimagesearch.build_dataset", "--source", str(messy),
                      "--output", str(built))  # fmt: skip
    assert made.returncode == 0, made.stderr[-3000:]
    model = tmp_path / "m.keras"
    trained = run_script("save_model.py", "--dataset", str(messy), "--model", str(model),
                         "--plot", str(tmp_path / "p.png"), "--image-size", "32", "--epochs",
                         "1", "--augmentation", "none", "--seed", "1")  # fmt: skip
    assert trained.returncode == 0, trained.stderr[-3000:]

    # The same files refused, in the same words; hidden names passed over silently.
    def skipped(stderr: str) -> list[str]:
        return sorted(line for line in stderr.splitlines() if line.startswith("[WARNING] skip"))

    assert skipped(made.stderr) == skipped(trained.stderr)
    assert len(skipped(made.stderr)) == 4, made.stderr  # 3 files and the count
    assert "._w00" not in made.stderr + trained.stderr and "DS_Store" not in made.stderr
    for name in ("empty.png", "notes.jpg", "truncated.png"):
        assert name in made.stderr
    assert "truncated" in made.stderr and "empty" in made.stderr

    # load_model.py --split test: exactly the test split training drew, which is the
    # testing/ folder build_dataset wrote (a nested image lands flat as more__name.png).
    table = tmp_path / "test.csv"
    loaded = run_script("load_model.py", "--images", str(messy), "--split", "test",
                        "--model", str(model), "--csv", str(table),
                        "--output", str(tmp_path / "m.png"))  # fmt: skip
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    with open(table, newline="") as handle:
        classified = [Path(row["path"]).relative_to(messy) for row in csv.DictReader(handle)]
    written = sorted(p.relative_to(built / "testing") for p in (built / "testing").glob("*/*"))
    flat = sorted(Path(p.parts[0], "__".join(p.parts[1:])) for p in classified)
    assert flat == written
    from pyimagesearch.core.modelfile import read_metadata

    counts = read_metadata(model)["provenance"]["file_counts"]
    assert len(classified) == counts["testing"]

    # The folder changes: its split cannot be drawn again, and that is one line.
    next(messy.glob("*/w*.png")).unlink()
    refused = run_script("load_model.py", "--images", str(messy), "--split", "test",
                         "--model", str(model), "--output", str(tmp_path / "m2.png"))  # fmt: skip
    assert refused.returncode == 2
    assert "no longer holds the files the model was trained on" in refused.stderr
