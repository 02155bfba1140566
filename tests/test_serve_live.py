"""The real server (serve_model.py in its own process, on a free 127.0.0.1 port) with the
model save_model.py trained, on real NIH images: the probabilities of load_model.py's
CSV, the bad-input catalogue followed by a good request, and the page in headless
Chromium showing the API's labels in the palette's colours. Then the page of a model of
other classes (untrained, no NIH image needed): titled by its classes, coloured by the
palette, its class names shown as text."""

import csv
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from pyimagesearch.core.palette import LABEL_BOX, class_colours
from pyimagesearch.serving.server_process import running_server
from tests.conftest import run_script, write_image
from tests.serving import (
    CASES,
    MAX_IMAGES,
    MAX_REQUEST_BYTES,
    check_refusal,
    chromium,
    good_request,
    upload_and_wait,
)


@pytest.fixture(scope="module")
def server(trained_model: Path, tmp_path_factory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("server") / "server.log"
    flags = ["--runtime", "tensorflow", "--max-images", str(MAX_IMAGES),
             "--max-request-mb", str(MAX_REQUEST_BYTES / 2**20)]  # fmt: skip
    with running_server(trained_model, log, *flags) as url:
        yield url


def real_images(malaria_source: Path, per_class: int = 4) -> list[Path]:
    """The first PER_CLASS images of each class, by name: the same files every run."""
    return [
        path
        for name in ("Parasitized", "Uninfected")
        for path in sorted((malaria_source / name).glob("*.png"))[:per_class]
    ]


def css(hex_colour: str) -> str:
    """'#rrggbb' as Chromium reports a computed colour."""
    red, green, blue = (int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgba({red}, {green}, {blue}, 1)"


def check_tiles(driver, files: list[Path], api: dict, colours: dict[str, str]) -> dict:
    """Each tile: the API's label and confidence, written in its class's colour on the
    dark label box, framed in that colour. Returns {file name: label shown}."""
    from selenium.webdriver.common.by import By

    shown = {}
    for tile in upload_and_wait(driver, driver.current_url, files):
        name = tile.find_element(By.CSS_SELECTOR, ".name").get_attribute("title")
        label = tile.find_element(By.CSS_SELECTOR, ".label")
        shown[name] = tile.get_attribute("data-label")
        expected = api[name]["label"]
        confidence = api[name]["probabilities"][expected]
        assert label.text == f"{expected} {100 * confidence:.1f}%"
        assert label.value_of_css_property("color") == css(colours[expected])
        assert label.value_of_css_property("background-color") == css(LABEL_BOX)
        assert tile.value_of_css_property("border-top-color") == css(colours[expected])
    return shown


def post(url: str, files: list[Path]) -> dict:
    response = httpx.post(
        url + "predict",
        files=[("files", (f.name, f.read_bytes(), "image/png")) for f in files],
        timeout=60,
    )
    assert response.status_code == 200, response.text
    return response.json()


def test_server_gives_the_probabilities_of_load_model_csv(
    server: str, trained_model: Path, malaria_source: Path, tmp_path: Path
):
    """Exact to the CSV's six decimals: the same files in the same batches of four
    (load_model.py -b 4; one request of four at a time), TensorFlow on both sides."""
    files = real_images(malaria_source)
    table = tmp_path / "predictions.csv"
    result = run_script(
        "load_model.py", "-i", *map(str, files), "-m", str(trained_model), "-n", "0",
        "-b", "4", "--runtime", "tensorflow", "--csv", str(table),
        "-o", str(tmp_path / "montage.png"), timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    with open(table, newline="") as handle:
        rows = list(csv.DictReader(handle))
    answers = [post(server, files[:4]), post(server, files[4:])]
    served = [p for answer in answers for p in answer["predictions"]]
    classes = answers[0]["model"]["classes"]
    assert [Path(row["path"]).name for row in rows] == [p["file"] for p in served]
    for row, prediction in zip(rows, served, strict=True):
        assert row["label"] == prediction["label"]
        for name in classes:
            assert row[f"p_{name}"] == f"{prediction['probabilities'][name]:.6f}", row
    assert answers[0]["model"]["file"] == trained_model.name
    assert answers[0]["model"]["test_accuracy"] is not None


def test_bad_input_catalogue_against_the_running_server_then_a_good_request(server: str):
    with httpx.Client(base_url=server.rstrip("/"), timeout=60) as client:
        for case in CASES:
            check_refusal(case, client.request(**case.request()))
        response = client.request(**good_request())
        assert response.status_code == 200, response.text
        assert client.get("/readyz").status_code == 200


def test_page_in_headless_chromium_shows_the_apis_labels(
    server: str, malaria_source: Path, tmp_path: Path
):
    from selenium.webdriver.common.by import By

    files = real_images(malaria_source, per_class=3)
    api = {p["file"]: p for f in files for p in post(server, [f])["predictions"]}
    with chromium() as driver:
        driver.get(server)
        assert driver.title == "Malaria cell classifier"
        assert driver.find_element(By.TAG_NAME, "h1").text == "Malaria cell classifier"
        shown = check_tiles(driver, files, api, class_colours(["Parasitized", "Uninfected"]))
        driver.save_screenshot(str(tmp_path / "page.png"))  # for a person; never committed
        summary = driver.find_element(By.ID, "summary").text
    assert shown == {name: prediction["label"] for name, prediction in api.items()}
    for label in set(shown.values()):
        assert f"{list(shown.values()).count(label)} {label}" in summary
    assert summary.startswith(f"{len(files)} images")


def test_page_of_another_models_classes_in_headless_chromium(tmp_path: Path):
    """A model whose second class name is markup: the page is titled by its classes,
    says no word of the malaria example, shows every name as text, and colours each
    tile from the palette."""
    from selenium.webdriver.common.by import By

    from pyimagesearch.core.preprocessing import default_recipe
    from pyimagesearch.training.serialization import save_model
    from pyimagesearch.training.train import build_model

    classes = ["zero", "<b>one</b> & two"]
    model = tmp_path / "other.keras"
    metadata = {"class_names": classes, "preprocessing": default_recipe((32, 32))}
    save_model(build_model(len(classes), (32, 32)), model, metadata, compiled=True)
    files = [write_image(tmp_path / "images" / f"{i}.png", seed=i) for i in range(4)]
    title = f"Image classifier: {' / '.join(classes)}"
    with running_server(model, tmp_path / "server.log") as url:
        api = {p["file"]: p for f in files for p in post(url, [f])["predictions"]}
        with chromium() as driver:
            driver.get(url)
            assert driver.title == title
            assert driver.find_element(By.TAG_NAME, "h1").text == title
            shown = check_tiles(driver, files, api, class_colours(classes))
            driver.save_screenshot(str(tmp_path / "page.png"))
            body = driver.find_element(By.TAG_NAME, "body").text
            bold = driver.find_elements(By.TAG_NAME, "b")
    assert shown == {name: prediction["label"] for name, prediction in api.items()}
    assert "Drop images here" in body and " / <b>one</b> & two" in body
    assert "cell" not in body.lower() and "diagnosis" not in body
    assert bold == []  # the class name stayed text
