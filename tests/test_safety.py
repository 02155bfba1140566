"""Issue 11: nothing the user owns is lost, and no input hangs a command or eats memory.

Commands run in a child process under a memory cap (RLIMIT_AS) and a timeout, so a
regression fails here instead of hanging CI or the machine.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from pyimagesearch.core.errors import UserError
from pyimagesearch.core.preprocessing import default_recipe
from tests.conftest import ROOT, write_image
from tests.serving import huge_png as png_of_side

METADATA = {"class_names": ["Parasitized", "Uninfected"], "preprocessing": default_recipe()}
MEMORY_CAP = 3 << 30  # TensorFlow and a 64x64 model need under 3 GB; one 20000^2 image more


def run_capped(*args: str, cwd: Path | None = None, file_size: int | None = None, timeout=300):
    """A command in a child process with at most MEMORY_CAP of address space (and, when
    given, at most FILE_SIZE bytes per file written: a full disk)."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))
        if file_size is not None:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes then fail with EFBIG
            resource.setrlimit(resource.RLIMIT_FSIZE, (file_size, file_size))

    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd or ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        preexec_fn=limit,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def refused(result, fragment: str) -> None:
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("[ERROR]")]
    assert len(errors) == 1 and fragment in errors[0], result.stderr[-2000:]


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    """A tiny valid model (64x64 input, two classes) saved the project's way."""
    import keras

    from pyimagesearch.training.serialization import save_model

    network = keras.Sequential(
        [
            keras.Input((64, 64, 3)),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(2, activation="softmax"),
        ]
    )
    path = tmp_path_factory.mktemp("model") / "tiny.keras"
    save_model(network, path, METADATA, compiled=True)
    return path


# --- what --overwrite may replace ---------------------------------------------------


def test_export_overwrite_never_deletes_the_model_or_other_files(tmp_path: Path):
    home = tmp_path / "H"
    home.mkdir()
    model = home / "model.keras"
    model.write_bytes(b"the user's model")
    (home / "notes.txt").write_text("mine")
    args = ("-m", "pyimagesearch.export", "--format", "tf_saved_model", "--overwrite")
    refused(run_capped(*args, "--model", str(model), "--output", str(home)), "holds --model")
    elsewhere = tmp_path / "m.keras"
    elsewhere.write_bytes(b"x")
    refused(run_capped(*args, "--model", str(elsewhere), "--output", str(home)), "not written")
    refused(
        run_capped(*args, "--model", str(elsewhere), "--output", ".", cwd=home),
        "pyimagesearch.json",
    )
    assert model.read_bytes() == b"the user's model"
    assert (home / "notes.txt").read_text() == "mine"


def earlier_export(folder: Path) -> Path:
    """What a tf_saved_model export leaves (the files by name; their bytes do not matter)."""
    (folder / "variables").mkdir(parents=True)
    (folder / "assets").mkdir()
    shard = "variables/variables.data-00000-of-00001"
    for name in ("pyimagesearch.json", "saved_model.pb", "fingerprint.pb",
                 "variables/variables.index", shard):  # fmt: skip
        (folder / name).write_bytes(b"{}")
    return folder


@pytest.mark.parametrize(
    "mine", ["assets/my_labels.txt", "variables/mine/notes.txt", "variables/notes.txt"]
)
def test_export_overwrite_refuses_a_user_file_below_the_top_and_keeps_it(
    model_file: Path, tmp_path: Path, mine: str
):
    """Issue 21: --overwrite looked at top-level names only and deleted these files."""
    output = earlier_export(tmp_path / "OUT")
    (output / mine).parent.mkdir(parents=True, exist_ok=True)
    (output / mine).write_text("the user's")
    result = run_capped(
        "-m", "pyimagesearch.export", "-m", str(model_file), "-f", "tf_saved_model",
        "-o", str(output), "--overwrite",
    )  # fmt: skip
    first = mine.split("/")[0] + "/" + mine.split("/")[1]
    refused(result, f"holds '{first}")
    assert (output / mine).read_text() == "the user's"
    assert (output / "saved_model.pb").read_bytes() == b"{}"  # nothing else touched either


def test_own_folder_check_looks_at_every_depth_and_refuses_links(tmp_path: Path):
    from pyimagesearch.core.safety import foreign_entry

    def owned(name: str) -> bool:
        return name in ("a/", "a/b/", "a/b/c.txt", "top.txt")

    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "c.txt").write_text("x")
    (tmp_path / "top.txt").write_text("x")
    assert foreign_entry(tmp_path, owned) is None
    (tmp_path / "a" / "b" / "d.txt").write_text("theirs")
    assert foreign_entry(tmp_path, owned) == "a/b/d.txt"
    (tmp_path / "a" / "b" / "d.txt").unlink()
    (tmp_path / "a" / "b" / "c.txt").unlink()
    (tmp_path / "a" / "b" / "c.txt").symlink_to(tmp_path / "top.txt")  # an owned name
    assert foreign_entry(tmp_path, owned) == "a/b/c.txt"


def write_source(root: Path, count: int = 3) -> Path:
    for name in ("Parasitized", "Uninfected"):
        for i in range(count):
            write_image(root / name / f"{name}_{i}.png", size=(8, 8), seed=i)
    return root


def build(source: Path, output: Path, *extra: str) -> subprocess.CompletedProcess:
    return run_capped("-m", "pyimagesearch.build_dataset", "--source", str(source),
                      "--output", str(output), "--split", "patient", *extra)  # fmt: skip


def test_build_dataset_overwrite_replaces_only_its_own_splits(tmp_path: Path):
    source = write_source(tmp_path / "SRC")
    output = tmp_path / "H"
    output.mkdir()
    (output / "README.md").write_text("kept")  # as in the project's malaria/ folder
    first = build(source, output)
    assert first.returncode == 0, first.stderr[-2000:]
    again = build(source, output, "--overwrite")
    assert again.returncode == 0, again.stderr[-2000:]
    assert (output / "README.md").read_text() == "kept"
    assert len(list((output / "training").rglob("*.png"))) > 0

    mine = output / "testing" / "mine"
    mine.mkdir()
    (mine / "results.txt").write_text("user data")
    refused(build(source, output, "--overwrite"), "mine")
    assert (mine / "results.txt").read_text() == "user data"
    (mine / "results.txt").rename(output / "testing" / "Parasitized" / "results.txt")
    mine.rmdir()
    refused(build(source, output, "--overwrite"), "results.txt")
    assert (output / "testing" / "Parasitized" / "results.txt").read_text() == "user data"

    foreign = tmp_path / "foreign"
    (foreign / "training" / "Parasitized").mkdir(parents=True)
    write_image(foreign / "training" / "Parasitized" / "only_copy.png")
    refused(build(source, foreign, "--overwrite"), "was not written by this tool")
    assert (foreign / "training" / "Parasitized" / "only_copy.png").exists()


def test_build_dataset_refuses_a_source_inside_its_output(tmp_path: Path):
    output = tmp_path / "H"
    source = write_source(output / "SRC")
    refused(build(source, output, "--overwrite"), "holds --source")
    refused(build(source, source / "out"), "is inside --source")
    assert len(list(source.rglob("*.png"))) == 6


# --- outputs that are inputs, or each other, or not regular files --------------------


def test_save_model_refuses_clashing_or_odd_outputs_before_work(tmp_path: Path):
    model = tmp_path / "X.keras"
    model.write_bytes(b"an earlier model")
    dataset = tmp_path / "DS"
    dataset.mkdir()
    run = lambda *a: run_capped("save_model.py", "--dataset", str(dataset), *a)  # noqa: E731
    refused(run("--model", str(model), "--checkpoint", str(model)), "name the same file")
    refused(run("--model", str(dataset / "m.keras")), "inside --dataset")
    refused(run("--model", str(model), "--plot", str(tmp_path / "plot.txt")), "must end in")
    fifo = tmp_path / "fifo.keras"
    os.mkfifo(fifo)
    refused(run("--model", str(fifo)), "not a regular file")
    assert model.read_bytes() == b"an earlier model"


def test_load_model_refuses_an_output_that_is_an_input(tmp_path: Path, model_file: Path):
    before = model_file.read_bytes()
    images = tmp_path / "images"
    write_image(images / "a.png")
    run = lambda *a: run_capped("load_model.py", "-i", str(images), "-m", str(model_file), *a)  # noqa: E731
    refused(run("--csv", str(model_file)), "is --model")
    refused(run("-o", str(images / "montage.png")), "inside --images")
    refused(run("--csv", str(tmp_path / "p.png"), "-o", str(tmp_path / "p.png")), "same file")
    assert model_file.read_bytes() == before


def test_a_failed_run_leaves_an_earlier_csv_as_it_was(tmp_path: Path, model_file: Path):
    images = tmp_path / "images"
    images.mkdir()
    (images / "broken.png").write_bytes(b"\x89PNG but nothing more")  # fails in the decoder
    table = tmp_path / "predictions.csv"
    table.write_text("earlier results\n")
    result = run_capped("load_model.py", "-i", str(images), "-m", str(model_file),
                        "--csv", str(table), "-o", str(tmp_path / "m.png"))  # fmt: skip
    refused(result, "none of the images could be read")
    assert table.read_text() == "earlier results\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images", "predictions.csv"]


def test_a_full_disk_is_an_error_not_written(tmp_path: Path, model_file: Path):
    images = tmp_path / "images"
    for i in range(16):  # random pixels: the montage PNG is several hundred KB
        write_image(images / f"{i}.png", size=(128, 128), seed=i)
    montage = tmp_path / "montage.png"
    montage.write_bytes(b"earlier montage")
    result = run_capped("load_model.py", "-i", str(images), "-m", str(model_file),
                        "-o", str(montage), file_size=100_000)  # fmt: skip
    refused(result, f"cannot write '{montage}'")
    assert "montage written" not in result.stdout
    assert montage.read_bytes() == b"earlier montage"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


# --- only regular files are read, and only images that fit in memory ------------------


def huge_png(path: Path, side: int = 20000) -> Path:
    """PATH written with tests.serving.huge_png: about 50 KB on disk, 1.2 GB decoded."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png_of_side(side))
    return path


def test_devices_fifos_odd_names_and_huge_images_are_skipped(tmp_path: Path, model_file: Path):
    images = tmp_path / "images"
    write_image(images / "good.png")
    (images / "z.png").symlink_to("/dev/zero")
    os.mkfifo(images / "f.png")
    huge_png(images / "big.png")
    (images / os.fsdecode(b"caf\xe9.png")).write_bytes((images / "good.png").read_bytes())
    result = run_capped("load_model.py", "-i", str(images), "-m", str(model_file), "-n", "0",
                        "-o", str(tmp_path / "m.png"), timeout=240)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "classifying 1 images" in result.stdout
    for fragment in ("z.png': not a regular file", "f.png': not a regular file",
                     "400,000,000 pixels", "not valid UTF-8", "skipped 4 file(s)"):  # fmt: skip
        assert fragment in result.stderr, result.stderr[-3000:]
    assert "unreadable" not in result.stderr
    # --max-pixels raises the bound (here: lowers it, to keep the test small).
    lowered = run_capped("load_model.py", "-i", str(images / "good.png"), "-m", str(model_file),
                         "--max-pixels", "100", "-o", str(tmp_path / "m.png"))  # fmt: skip
    refused(lowered, "no image files")


def test_a_fifo_named_as_the_model_is_refused_not_waited_on(tmp_path: Path):
    from pyimagesearch.training.serialization import load_model

    fifo = tmp_path / "model.keras"
    os.mkfifo(fifo)
    with pytest.raises(UserError, match="not a regular file"):
        load_model(fifo)


def test_arguments_out_of_range_are_refused_before_work(tmp_path: Path):
    # argparse's refusals: usage, then one "error:" line, exit status 2.
    result = run_capped("save_model.py", "-d", str(tmp_path), "-m", str(tmp_path / "m.keras"),
                        "--image-size", "100000")  # fmt: skip
    assert result.returncode == 2 and "at most 1024 pixels" in result.stderr
    for command in (("save_model.py", "-d", str(tmp_path), "-m", str(tmp_path / "m.keras")),
                    ("load_model.py", "-i", str(tmp_path), "-m", str(tmp_path / "m.keras")),
                    ("-m", "pyimagesearch.build_dataset", "--source", str(tmp_path))):  # fmt: skip
        result = run_capped(*command, "--seed", "-1")
        assert result.returncode == 2 and "--seed" in result.stderr, result.stderr[-2000:]
        assert "Traceback" not in result.stderr


# --- metadata checked by type, range, size and nesting before use ---------------------


def with_member(model_file: Path, target: Path, name: str, data: bytes, **info) -> Path:
    """A copy of MODEL_FILE whose member NAME holds DATA (ZipInfo attributes in INFO)."""
    with zipfile.ZipFile(model_file) as source, zipfile.ZipFile(target, "w") as copy:
        for item in source.infolist():
            if item.filename != name:
                copy.writestr(item, source.read(item))
        entry = zipfile.ZipInfo(name)
        entry.compress_type = zipfile.ZIP_DEFLATED
        for key, value in info.items():
            setattr(entry, key, value)
        copy.writestr(entry, data)
    return target


def document(**changes) -> bytes:
    metadata = json.loads(json.dumps({"format": 1, **METADATA}))
    for key, value in changes.items():
        if key in ("height", "width", "interpolation", "scale"):
            metadata["preprocessing"][key] = value
        else:
            metadata[key] = value
    return json.dumps(metadata).encode()


@pytest.mark.parametrize(
    "data, message",
    [
        (document(height="64"), "height must be an integer"),
        (document(width=64.7), "width must be an integer"),
        (document(height=True), "height must be an integer"),
        (document(height=20000), "PYIMAGESEARCH_MAX_INPUT_SIDE"),
        (document(class_names={"a": 1, "b": 2}), "class_names"),
        (document(class_names=[1, 2]), "class_names"),
        (document(class_names=["a", "a"]), "class_names"),
        (document(interpolation=["bilinear"]), "interpolation"),
        (document(scale=None), "pixel scale"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (document(padding="x" * (20 << 20)), "inflates to"),
        (b"\xff\xfe not utf-8", "cannot read"),
    ],
)
def test_bad_metadata_is_one_line(tmp_path: Path, model_file: Path, data: bytes, message: str):
    from pyimagesearch.training.serialization import METADATA_NAME, load_model

    path = with_member(model_file, tmp_path / "bad.keras", METADATA_NAME, data)
    with pytest.raises(UserError, match=message):
        load_model(path)


def test_malformed_provenance_is_ignored_with_a_warning(tmp_path: Path, model_file: Path, capsys):
    from pyimagesearch.training.serialization import METADATA_NAME, load_model

    data = document(provenance="saved by hand")
    path = with_member(model_file, tmp_path / "p.keras", METADATA_NAME, data)
    assert load_model(path)[1]["provenance"] == {}
    assert "malformed provenance" in capsys.readouterr().err


def patch_header(path: Path, name: str, local: int, central: int, value: int) -> None:
    """Set a 16-bit field of member NAME in its local header (at offset LOCAL) and its
    central-directory entry (at CENTRAL): zipfile itself would never write these values."""
    raw = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        header = archive.getinfo(name).header_offset
    entry = raw.rindex(b"PK\x01\x02", 0, raw.rindex(name.encode()))
    struct.pack_into("<H", raw, header + local, value)
    struct.pack_into("<H", raw, entry + central, value)
    path.write_bytes(bytes(raw))


def test_encrypted_or_unknown_compression_members_are_one_line(tmp_path: Path, model_file):
    from pyimagesearch.training.serialization import METADATA_NAME, load_model

    stored = {"compress_type": zipfile.ZIP_STORED}
    encrypted = with_member(model_file, tmp_path / "e.keras", METADATA_NAME, document(), **stored)
    patch_header(encrypted, METADATA_NAME, 6, 8, 0x1)  # general-purpose flag bit 0
    with pytest.raises(UserError, match="encrypted"):
        load_model(encrypted)
    odd = with_member(model_file, tmp_path / "c.keras", METADATA_NAME, document(), **stored)
    patch_header(odd, METADATA_NAME, 8, 10, 9)  # method 9, Deflate64: zipfile cannot read it
    with pytest.raises(UserError, match="compression method 9"):
        load_model(odd)


def test_export_overwrite_accepts_an_earlier_export(tmp_path: Path):
    from pyimagesearch.export import check_output

    earlier = tmp_path / "exported"
    earlier.mkdir()
    (earlier / "pyimagesearch.json").write_text("{}")
    (earlier / "model.onnx").write_bytes(b"onnx")
    check_output(earlier, overwrite=True, model=str(tmp_path / "m.keras"))
    check_output(earlier_export(tmp_path / "saved"), overwrite=True, model="m.keras")
    (earlier / "pyimagesearch.json").unlink()
    with pytest.raises(UserError, match="has no pyimagesearch.json"):
        check_output(earlier, overwrite=True, model=str(tmp_path / "m.keras"))
