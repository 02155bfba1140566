"""Bad input: one clear line on stderr, exit status 2, no traceback, nothing damaged."""

from pathlib import Path

import pytest

from pyimagesearch.core.errors import run_command
from tests.conftest import run_script, without_tensorflow, write_image
from tests.test_safety import run_capped


def assert_clean_refusal(result, fragment: str):
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert fragment in result.stderr


def refused_here(command: str, argv: list[str], capsys, fragment: str) -> None:
    """COMMAND's main run in this process as its script runs it: exit status 2 and one
    [ERROR] line naming FRAGMENT (argparse's own refusals included)."""
    import importlib

    main = importlib.import_module(command).main
    try:
        status = run_command(main, argv)
    except SystemExit as exit_:  # argparse's refusal of a bad value
        status = exit_.code
    assert status == 2
    err = capsys.readouterr().err
    assert len([line for line in err.splitlines() if fragment in line]) == 1, err


@pytest.mark.parametrize(
    "layout, fragment",
    [
        ({}, "does not exist"),
        ({"training": ["A", "B"], "validation": ["A", "B"]}, "but no testing/"),
        ({"training": ["A", "B"], "validation": ["A", "B"], "testing": ["A", "C"]}, "differ"),
        ({"training": [], "validation": ["A"], "testing": ["A"]}, "no class folders"),
    ],
)
def test_save_model_rejects_bad_datasets(tmp_path: Path, capsys, layout, fragment):
    """In this process, through the command's own entry point (the fresh-process refusals
    below show what a user's shell sees): one [ERROR] line, exit status 2."""
    import save_model

    dataset = tmp_path / "data"
    for split, classes in layout.items():
        (dataset / split).mkdir(parents=True)
        for name in classes:
            write_image(dataset / split / name / "x.png")
    argv = ["-d", str(dataset), "-m", str(tmp_path / "m.model")]
    assert run_command(save_model.main, argv) == 2
    (error,) = capsys.readouterr().err.splitlines()
    assert error.startswith("[ERROR] ") and fragment in error
    assert sorted(p.name for p in tmp_path.iterdir()) == (["data"] if layout else [])


def test_empty_class_folder(synthetic_dataset: Path, tmp_path: Path, capsys):
    for f in (synthetic_dataset / "validation" / "Uninfected").iterdir():
        f.unlink()
    argv = ["-d", str(synthetic_dataset), "-m", str(tmp_path / "m.model")]
    refused_here("save_model", argv, capsys, "holds no image files")


def test_unwritable_model_path_fails_before_training(synthetic_dataset: Path, tmp_path: Path):
    result = run_script(
        "save_model.py", "-d", str(synthetic_dataset), "-m", str(tmp_path / "missing" / "m.model")
    )
    assert_clean_refusal(result, "cannot write --model '")
    assert "does not exist" in result.stderr and "cannot write cannot" not in result.stderr
    assert "Found" not in result.stdout


def test_load_model_rejects_bad_images_and_models(tmp_path: Path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    model = tmp_path / "zero.model"
    model.write_bytes(b"")
    refused_here("load_model", ["-i", str(empty), "-m", str(model)], capsys, "no image files")
    nowhere = ["-i", str(tmp_path / "nowhere"), "-m", str(model)]
    refused_here("load_model", nowhere, capsys, "does not exist")
    write_image(empty / "a.png")
    refused_here("load_model", ["-i", str(empty), "-m", str(model)], capsys, "empty")
    negative = ["-i", str(empty), "-m", str(model), "-n", "-1"]
    refused_here("load_model", negative, capsys, "--samples")


def test_broken_files_are_skipped_by_name_and_training_goes_on(
    synthetic_dataset: Path, tmp_path: Path, capsys
):
    """Training runs in this process (a TensorFlow start-up less); the loader in its own."""
    import save_model

    training = synthetic_dataset / "training" / "Parasitized"
    (training / "zero.png").write_bytes(b"")
    (training / "notes.png").write_text("not an image")
    good = (training / "Parasitized_0.png").read_bytes()
    (training / "truncated.png").write_bytes(good[: len(good) // 3])
    (training / "readme.txt").write_text("ignored: not an image extension")
    model = tmp_path / "m.model"
    argv = ["-d", str(synthetic_dataset), "-m", str(model), "-p", str(tmp_path / "plot.png"),
            "--epochs", "1", "--batch-size", "8", "--seed", "1"]  # fmt: skip
    assert run_command(save_model.main, argv) == 0
    stderr = capsys.readouterr().err
    for name in ("zero.png", "notes.png", "truncated.png"):
        assert name in stderr
    assert "skipped 3 unreadable file(s)" in stderr
    assert model.stat().st_size > 0

    # The loader skips the same files the same way, and says how many it used.
    listed = run_script(
        "load_model.py",
        "-i",
        str(training),
        "-m",
        str(model),
        "-n",
        "100",
        "-o",
        str(tmp_path / "montage.png"),
    )
    assert listed.returncode == 0, listed.stderr[-3000:]
    assert "using all" in listed.stdout
    assert "skipped 3 unreadable file(s)" in listed.stderr


def test_split_with_only_broken_files_is_an_error(synthetic_dataset: Path, tmp_path: Path, capsys):
    for folder in (synthetic_dataset / "testing").iterdir():
        for image in folder.iterdir():
            image.write_bytes(b"broken")
    argv = ["-d", str(synthetic_dataset), "-m", str(tmp_path / "m.model")]
    refused_here("save_model", argv, capsys, "testing/Parasitized' holds no image files")


def test_load_model_checks_output_paths_before_loading(tmp_path: Path):
    images = tmp_path / "images"
    write_image(images / "a.png")
    model = tmp_path / "any.model"
    model.write_bytes(b"not looked at yet")
    missing = tmp_path / "missing" / "out.csv"
    result = run_script("load_model.py", "-i", str(images), "-m", str(model), "--csv", str(missing))
    assert_clean_refusal(result, "does not exist")
    result = run_script(
        "load_model.py", "-i", str(images), "-m", str(model), "-o", str(tmp_path / "m.txt")
    )
    assert_clean_refusal(result, "must end in .png")


def test_too_small_image_size_is_refused_before_any_work(tmp_path: Path, capsys):
    argv = ["-d", str(tmp_path), "-m", str(tmp_path / "m.model"), "--image-size", "16"]
    refused_here("save_model", argv, capsys, "at least 32 pixels")


def test_checkpoint_option_never_overwrites_a_users_file(synthetic_dataset: Path, tmp_path: Path):
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    result = run_script("save_model.py", "-d", str(synthetic_dataset), "-m",
                        str(tmp_path / "m.keras"), "-p", str(tmp_path / "p.png"),
                        "--epochs", "1", "--checkpoint", str(notes))  # fmt: skip
    assert_clean_refusal(result, "is not a training checkpoint of this project")
    assert notes.read_text() == "my notes\n" and "Found" not in result.stdout


@pytest.mark.parametrize("kind", ["everything", "huge-epochs"])
def test_excluding_every_image_or_a_billion_epochs_is_refused(
    synthetic_dataset: Path, tmp_path: Path, capsys, kind: str
):
    """In this process (nothing here can hang or eat memory, unlike the lists below)."""
    if kind == "everything":
        names = [p.name for p in (synthetic_dataset / "training").rglob("*.png")]
        (tmp_path / "all.txt").write_text("\n".join(names) + "\n")
        extra, fragment = ["--exclude", str(tmp_path / "all.txt")], "lists every training image"
    else:
        extra, fragment = ["--epochs", "1000000000"], "must be at most 1000"
    argv = ["-d", str(synthetic_dataset), "-m", str(tmp_path / "m.keras"),
            "-p", str(tmp_path / "p.png"), *extra]  # fmt: skip
    refused_here("save_model", argv, capsys, fragment)
    assert not (tmp_path / "m.keras").exists()


@pytest.mark.parametrize("kind", ["device", "fifo"])
def test_exclude_lists_go_through_the_file_and_size_rules(
    synthetic_dataset: Path, tmp_path: Path, kind: str
):
    import os

    if kind == "device":
        extra, fragment = ["--exclude", "/dev/zero"], "is not a regular file"
    else:
        fifo = tmp_path / "list.fifo"
        os.mkfifo(fifo)  # reading it would wait forever for a writer
        extra, fragment = ["--exclude", str(fifo)], "is not a regular file"
    # Under a memory cap and a timeout: without the rules, /dev/zero fills memory and the
    # FIFO waits forever for a writer. The list is judged with the paths, before
    # TensorFlow starts (blocked here: reaching for it fails the run).
    result = run_capped(*without_tensorflow("save_model.py"), "-d", str(synthetic_dataset),
                        "-m", str(tmp_path / "m.keras"), "-p", str(tmp_path / "p.png"),
                        *extra, timeout=120)  # fmt: skip
    assert_clean_refusal(result, fragment)


def test_crossval_refuses_an_unreadable_settings_file_and_leaves_no_state(tmp_path: Path):
    data = tmp_path / "flat"
    for name in ("cat", "dog"):
        for i in range(10):
            write_image(data / name / f"{name}{i}.png", size=(8, 8), seed=i)
    output = tmp_path / "cv"
    output.mkdir()
    (output / "settings.json").write_text("{not json")
    result = run_script("-m", "pyimagesearch.crossval", "-d", str(data), "-o", str(output),
                        "--folds", "2", "--epochs", "1", timeout=300)  # fmt: skip
    assert_clean_refusal(result, "cannot read")
    # A bad --exclude fails before settings.json is written, so the fixed rerun is free;
    # and before TensorFlow starts (blocked here: reaching for it fails the run).
    fresh = tmp_path / "cv2"
    crossval = without_tensorflow("pyimagesearch/crossval.py")
    bad = run_script(*crossval, "-d", str(data), "-o", str(fresh),
                     "--exclude", str(tmp_path / "missing.txt"), timeout=300)  # fmt: skip
    assert_clean_refusal(bad, "cannot read the list of files to exclude")
    assert not (fresh / "settings.json").exists()
