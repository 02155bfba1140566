"""One gate before every decode: the header must parse, the format be one of four, the
declared pixels within the bound, and only an animation's first frame is decoded."""

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pyimagesearch.core import preprocessing
from pyimagesearch.core.preprocessing import FORMATS, UnreadableImage, decode_rgb
from pyimagesearch.inference.montage import cell_tile
from pyimagesearch.serving.serve import ClientError, decode_upload
from tests.conftest import write_image
from tests.test_safety import huge_png, run_capped


def chunk(kind: bytes, data: bytes, crc: int | None = None) -> bytes:
    body = kind + data
    crc = zlib.crc32(body) if crc is None else crc
    return struct.pack(">I", len(data)) + body + struct.pack(">I", crc)


def bad_crc_bomb(path: Path, side: int = 20000) -> Path:
    """A 20000x20000 grey PNG (400 M pixels, 1.2 GB as RGB) whose tEXt chunk has a wrong
    CRC: Pillow cannot read its header, while TensorFlow's decoder ignored the CRC and
    decoded it (issue: it killed load_model.py, save_model.py and crossval)."""
    compressor = zlib.compressobj(9)
    row = b"\x00" * (1 + side // 8)
    data = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"tEXt", b"a\x00b", crc=1)
        + chunk(b"IDAT", data) + chunk(b"IEND", b"")
    )  # fmt: skip
    return path


def test_a_header_that_cannot_be_parsed_is_refused_never_decoded(tmp_path: Path):
    """Mutation: letting open_checked fall through to a decoder that ignores CRCs (and no
    pixel bound) makes load_model.py below die at the memory cap."""
    bomb = bad_crc_bomb(tmp_path / "bomb.png")
    with pytest.raises(UnreadableImage) as refused:
        decode_rgb(bomb)
    # A PNG whose header does not parse is a damaged image (400), not an unknown format.
    assert refused.value.status == 400 and "damaged PNG" in refused.value.reason
    with pytest.raises(ClientError) as answered:
        decode_upload("bomb.png", bomb.read_bytes(), preprocessing.default_recipe(), 50_000_000)
    assert answered.value.status == 400


def test_load_model_skips_bombs_in_a_folder_under_a_memory_cap(tmp_path: Path):
    from pyimagesearch.training.serialization import save_model
    from pyimagesearch.training.train import build_model
    from tests.test_safety import METADATA  # a valid 64x64 model, saved the project's way

    model = tmp_path / "m.model"
    save_model(build_model(2), model, METADATA, compiled=True)
    images = tmp_path / "images"
    write_image(images / "good.png")
    bad_crc_bomb(images / "bomb.png")
    huge_png(images / "huge.png")
    result = run_capped("load_model.py", "-i", str(images), "-m", str(model), "-n", "0",
                        "-o", str(tmp_path / "m.png"), timeout=240)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "classifying" in result.stdout and "Traceback" not in result.stderr
    assert "bomb.png': a truncated or damaged PNG image" in result.stderr, result.stderr[-2000:]
    assert "400,000,000 pixels" in result.stderr


def gif(frames: list[tuple[int, int, int]], size=(40, 30)) -> bytes:
    images = [Image.new("RGB", size, colour) for colour in frames]
    buffer = io.BytesIO()
    images[0].save(buffer, "GIF", save_all=True, append_images=images[1:], duration=10)
    return buffer.getvalue()


def test_only_the_first_frame_of_an_animation_is_decoded():
    """Mutation: decoding the last frame (image.seek(image.n_frames - 1)) fails this, and
    counting the frames (n_frames) would itself read through every frame of a bomb."""
    rgb = decode_rgb(gif([(200, 10, 10), (10, 200, 10), (10, 10, 200)]))
    assert rgb.shape == (30, 40, 3)
    assert np.abs(rgb.astype(int) - [200, 10, 10]).max() <= 8  # palette rounding


def test_a_gif_declaring_too_many_pixels_per_frame_is_refused_at_its_header():
    data = gif([(1, 2, 3), (4, 5, 6)], size=(300, 200))
    with pytest.raises(UnreadableImage) as refused:
        decode_rgb(data, max_pixels=300 * 200 - 1)
    assert refused.value.status == 413 and refused.value.pixels == 60_000
    assert decode_rgb(data, max_pixels=300 * 200).shape == (200, 300, 3)


def test_an_empty_or_truncated_file_says_so():
    """Issue 40: a 0-byte file and a JPEG cut short both read "not a PNG/JPEG/BMP/GIF
    image". Mutation: why_unopened returning the old reason fails this."""
    buffer = io.BytesIO()
    Image.new("RGB", (40, 40), (9, 90, 200)).save(buffer, "JPEG")
    cases = ((b"", "the file is empty"), (buffer.getvalue()[:12], "truncated or damaged JPEG"),
             (b"plain text", "not a PNG/JPEG/BMP/GIF image"))  # fmt: skip
    for data, words in cases:
        with pytest.raises(UnreadableImage) as refused:
            decode_rgb(data)
        assert words in refused.value.reason


def test_only_the_four_listed_formats_are_read():
    """WebP (and TIFF, ...) decode in Pillow but are refused: the docs list four formats.
    Mutation: adding "WEBP" to FORMATS fails this."""
    assert FORMATS == ("PNG", "JPEG", "BMP", "GIF")
    for kind in ("WEBP", "TIFF"):
        buffer = io.BytesIO()
        Image.new("RGB", (8, 8), (9, 9, 9)).save(buffer, kind)
        with pytest.raises(UnreadableImage) as refused:
            decode_rgb(buffer.getvalue())
        assert refused.value.status == 415


def test_montage_and_audit_tiles_pass_the_same_gate(tmp_path: Path):
    """The audit draws suspects' tiles with montage.cell_tile: a huge PNG is refused
    before decoding. Mutation: cell_tile decoding with cv2.imread fails this (and would
    decode 1.2 GB)."""
    with pytest.raises(UnreadableImage):
        cell_tile(str(huge_png(tmp_path / "huge.png")))
    assert cell_tile(str(write_image(tmp_path / "ok.png"))).shape == (128, 128, 3)


def test_a_csv_left_half_written_by_a_killed_run_is_swept_by_the_next(tmp_path: Path):
    """A named write killed by SIGKILL leaves its temporary beside the output. The next
    write to that path removes this host's leftovers whose writer is dead, and nothing
    else (issue 41: the name proves its owner; the look-alike cases are in
    test_untouched.py). Mutation: dropping remove_stale_temporaries from
    safety.replacing fails this."""
    from pyimagesearch.core import safety
    from tests.test_untouched import killed_write

    output = tmp_path / "out.csv"
    killed_write(output)
    (leftover,) = tmp_path.iterdir()
    other_host = tmp_path / leftover.name.replace(f".{safety.HOST}.", ".other-host.", 1)
    other_host.write_text("path,label\n")
    with safety.replacing(output) as temporary:
        temporary.write_text("path,label\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([output.name, other_host.name])


def test_max_pixels_is_passed_to_the_listing_and_not_kept(tmp_path: Path):
    """Issue 20: four commands set a global bound, so in one process (a test, a notebook)
    one call's --max-pixels stayed for the next. The bound is now an argument: the
    training listing honours it, and the next call without it uses the default.
    Mutation: list_images ignoring its max_pixels (usable_images(found)) fails this."""
    from pyimagesearch.training.data import pool_dataset, scan_dataset
    from tests.conftest import write_dataset

    root = write_dataset(tmp_path / "d", {"training": 2, "validation": 1, "testing": 1})
    write_image(root / "training" / "Parasitized" / "wide.png", size=(400, 300))
    bound = 90 * 70  # the other images' size: wide.png declares more
    splits, _ = scan_dataset(root, max_pixels=bound)
    assert len(splits["training"].paths) == 4
    assert len(pool_dataset(root, bound).paths) == 8
    again, _ = scan_dataset(root)
    assert len(again["training"].paths) == 5


def test_save_model_and_crossval_pass_max_pixels_to_training(synthetic_dataset: Path, tmp_path):
    """--max-pixels reaches the training code of both commands (it travels in
    TrainConfig, not in a global). Mutation: config_from_options leaving max_pixels out
    fails this."""
    import save_model
    from pyimagesearch import crossval
    from pyimagesearch.options import apply_recipe, config_from_options

    for parse_args, argv in (
        (save_model.parse_args, ["-d", str(synthetic_dataset), "-m", str(tmp_path / "m.keras")]),
        (crossval.parse_args, ["-d", str(synthetic_dataset), "-o", str(tmp_path / "cv")]),
    ):
        args = parse_args([*argv, "--max-pixels", "100"])
        apply_recipe(args)  # crossval fills the recipe's fields after recording its settings
        assert config_from_options(args).max_pixels == 100
