"""Images are read as a viewer shows them: the EXIF orientation tag is applied.

The eight orientations are written here from the EXIF specification (where row 0 and
column 0 of the stored pixels belong on screen), in NumPy, independently of Pillow's
own table, so a wrong or missing transpose fails."""

import os
import struct
from pathlib import Path

import numpy as np
import pytest
import sklearn
from PIL import Image

from pyimagesearch.core.preprocessing import decode_rgb

# display -> stored pixels, for each EXIF orientation; the reader must undo it.
STORED = {
    1: lambda a: a,
    2: lambda a: a[:, ::-1],  # mirrored left-right
    3: lambda a: a[::-1, ::-1],  # rotated 180
    4: lambda a: a[::-1],  # mirrored top-bottom
    5: lambda a: a.transpose(1, 0, 2),  # mirrored along the main diagonal
    6: lambda a: np.rot90(a, 1),  # the camera was turned clockwise: shown rotated 90 CW
    7: lambda a: a[::-1, ::-1].transpose(1, 0, 2),  # mirrored along the other diagonal
    8: lambda a: np.rot90(a, -1),  # shown rotated 90 counter-clockwise
}
ORIENTATION = 0x0112


def upright() -> np.ndarray:
    """A 5x8 image with no symmetry: every pixel a different colour."""
    index = np.arange(5 * 8).reshape(5, 8)
    return np.stack([index * 6, 255 - index * 6, (index * 37) % 256], axis=2).astype(np.uint8)


@pytest.mark.parametrize("orientation", sorted(STORED))
@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_every_orientation_reads_upright(tmp_path: Path, orientation: int, suffix: str):
    display = upright()
    stored = np.ascontiguousarray(STORED[orientation](display))
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    path = tmp_path / f"o{orientation}{suffix}"
    options = {"quality": 100, "subsampling": 0} if suffix == ".jpg" else {}
    Image.fromarray(stored).save(path, exif=exif.tobytes(), **options)
    decoded = decode_rgb(path).astype(int)
    assert decoded.shape == display.shape
    tolerance = 0 if suffix == ".png" else 12  # JPEG at quality 100 is nearly lossless
    assert np.abs(decoded - display).max() <= tolerance
    assert np.array_equal(decode_rgb(path.read_bytes()), decode_rgb(path))  # server's bytes


def with_phone_exif(jpeg: bytes, orientation: int) -> bytes:
    """The JPEG with an APP1 Exif segment right after its start marker, as a phone camera
    writes it (make, model, date, orientation), its compressed pixels untouched."""
    exif = Image.Exif()
    exif[0x010F] = "Apple"  # Make
    exif[0x0110] = "iPhone 13"  # Model
    exif[0x0132] = "2026:12:07 10:15:00"  # DateTime
    exif[ORIENTATION] = orientation
    payload = b"Exif\x00\x00" + exif.tobytes()
    segment = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
    assert jpeg[:2] == b"\xff\xd8"
    return jpeg[:2] + segment + jpeg[2:]


def test_a_phone_photo_with_orientation_6_reads_upright(tmp_path: Path):
    """A real camera JPEG (scikit-learn's china.jpg, 640x427) with a phone's EXIF header
    saying "rotate 90 clockwise": the same compressed pixels, so the decode must be the
    untagged decode turned exactly, at every pixel."""
    photo = Path(os.path.dirname(sklearn.__file__)) / "datasets" / "images" / "china.jpg"
    original = decode_rgb(photo)
    for orientation in (3, 6, 8):
        tagged = tmp_path / f"phone-{orientation}.jpg"
        tagged.write_bytes(with_phone_exif(photo.read_bytes(), orientation))
        with Image.open(tagged) as image:  # the header a viewer reads
            assert image.getexif()[ORIENTATION] == orientation
            assert image.getexif()[0x0110] == "iPhone 13"
        shown = {3: np.rot90(original, 2), 6: np.rot90(original, -1), 8: np.rot90(original, 1)}
        assert np.array_equal(decode_rgb(tagged), shown[orientation]), orientation


def test_a_trained_model_scores_exif_rotated_copies_as_the_originals(
    trained_model: Path, tutorial_dataset: Path, tmp_path: Path
):
    """The issue's check: a trained model's test images, re-saved with orientations 3, 6
    and 8 (stored turned, tagged to be shown upright), score as the originals do, in
    load_model.py (a fresh process) and through the server's upload path."""
    import csv

    from fastapi.testclient import TestClient

    from pyimagesearch.serving.serve import Limits, Settings, build_service, create_app
    from tests.conftest import run_script

    originals = sorted((tutorial_dataset / "testing").glob("*/*.png"))
    rotated = tmp_path / "rotated"
    copies: dict[Path, Path] = {}
    for orientation in (3, 6, 8):
        exif = Image.Exif()
        exif[ORIENTATION] = orientation
        for path in originals:
            copy = rotated / path.parent.name / f"{path.stem}-o{orientation}.png"
            copy.parent.mkdir(parents=True, exist_ok=True)
            with Image.open(path) as image:
                stored = np.ascontiguousarray(STORED[orientation](np.asarray(image.convert("RGB"))))
            Image.fromarray(stored).save(copy, exif=exif.tobytes())
            copies[copy] = path
    table = tmp_path / "rows.csv"
    result = run_script("load_model.py", "--images", str(tutorial_dataset / "testing"),
                        str(rotated), "--model", str(trained_model), "--samples", "0",
                        "--csv", str(table), "--output", str(tmp_path / "m.png"))  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    with open(table) as handle:
        rows = {Path(row["path"]): row for row in csv.DictReader(handle)}
    assert len(rows) == 4 * len(originals) == 400

    def accuracy(paths) -> float:
        return float(np.mean([rows[p]["label"] == p.parent.name for p in paths]))

    for orientation in (3, 6, 8):
        turned = [c for c in copies if c.stem.endswith(f"-o{orientation}")]
        assert abs(accuracy(turned) - accuracy(originals)) <= 0.01, orientation
        for copy in turned:
            assert rows[copy]["p_Parasitized"] == rows[copies[copy]]["p_Parasitized"]

    settings = Settings(str(trained_model), "tensorflow", limits=Limits(max_images=8))
    service = build_service(settings)
    sent = originals[:4] + [c for c in copies if copies[c] in originals[:4]]
    with TestClient(create_app(service)) as client:
        served = {}
        for start in range(0, len(sent), 8):
            files = [
                ("files", (str(p), p.read_bytes(), "image/png")) for p in sent[start : start + 8]
            ]
            while (response := client.post("/predict", files=files)).status_code == 503:
                pass  # warming up
            assert response.status_code == 200, response.text
            for prediction in response.json()["predictions"]:
                served[Path(prediction["file"])] = prediction["probabilities"]["Parasitized"]
    for copy in sent[4:]:
        assert abs(served[copy] - served[copies[copy]]) < 1e-5, copy
