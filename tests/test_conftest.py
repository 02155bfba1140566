"""The real-data fixtures accept every form of MALARIA_SOURCE the README documents, and a
set but unusable MALARIA_SOURCE fails the run instead of skipping its tests."""

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from pyimagesearch.core.errors import UserError
from tests.conftest import ROOT, resolve_malaria_source, write_image


def nih_folder(root: Path) -> Path:
    for name in ("Parasitized", "Uninfected"):
        write_image(root / name / f"{name}_0.png")
    return root


def test_folder_nested_cell_images_and_zip_are_accepted(tmp_path: Path):
    flat = nih_folder(tmp_path / "flat")
    nested = nih_folder(tmp_path / "download" / "cell_images")  # what the NIH zip unpacks to
    archive = tmp_path / "cell_images.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        for file in nested.rglob("*.png"):
            handle.write(file, file.relative_to(tmp_path / "download"))

    assert resolve_malaria_source(str(flat), tmp_path / "s1") == flat
    assert resolve_malaria_source(str(tmp_path / "download"), tmp_path / "s2") == nested
    from_zip = resolve_malaria_source(str(archive), tmp_path / "s3")
    assert (from_zip / "Parasitized" / "Parasitized_0.png").is_file()
    assert from_zip.is_relative_to(tmp_path / "s3")  # extracted aside, not beside the zip
    with pytest.raises(UserError):
        resolve_malaria_source(str(tmp_path / "missing"), tmp_path / "s4")


def pytest_in_a_fresh_process(test: str, source: str | None, **extra_env: str) -> str:
    """Run pytest on TEST with our conftest and MALARIA_SOURCE set to SOURCE (or unset)."""
    hidden = ("MALARIA_SOURCE", "REQUIRE_BROWSER")
    env = {k: v for k, v in os.environ.items() if k not in hidden} | extra_env
    if source is not None:
        env["MALARIA_SOURCE"] = source
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "tests.conftest",
         "--rootdir", str(Path(test).parent), test],
        cwd=ROOT, env={**env, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    return f"rc={result.returncode}\n{result.stdout}"


def test_real_data_tests_fail_instead_of_skipping_when_malaria_source_is_set(tmp_path: Path):
    test = tmp_path / "test_real.py"
    test.write_text(
        "import pytest\n"
        "def test_uses_real_images(malaria_source):\n"
        "    assert (malaria_source / 'Parasitized').is_dir()\n"
        "def test_skips_for_another_reason(malaria_source):\n"
        "    pytest.skip('some reason')\n"
    )
    unset = pytest_in_a_fresh_process(str(test), None)
    assert unset.startswith("rc=0") and "2 skipped" in unset, unset
    unusable = pytest_in_a_fresh_process(str(test), str(tmp_path / "nowhere"))
    assert unusable.startswith("rc=1") and "2 errors" in unusable, unusable
    assert "is unusable" in unusable
    usable = pytest_in_a_fresh_process(str(test), str(nih_folder(tmp_path / "cells")))
    assert usable.startswith("rc=1") and "1 failed, 1 passed" in usable, usable
    assert "MALARIA_SOURCE is set, but this real-data test skipped: Skipped: some reason" in usable


def test_a_missing_browser_skips_under_malaria_source_unless_ci_requires_it(tmp_path: Path):
    """README command 2 on a machine without Chromium passes; .ci/run (REQUIRE_BROWSER=1)
    still fails the browser test where the browser is missing."""
    test = tmp_path / "test_browser.py"
    test.write_text(
        "from tests.serving import chromium\n"
        "def test_page(malaria_source, monkeypatch):\n"
        "    monkeypatch.setattr('shutil.which', lambda name: None)\n"
        "    with chromium():\n"
        "        pass\n"
    )
    cells = str(nih_folder(tmp_path / "cells"))
    readme = pytest_in_a_fresh_process(str(test), cells)
    assert readme.startswith("rc=0") and "1 skipped" in readme, readme
    ci = pytest_in_a_fresh_process(str(test), cells, REQUIRE_BROWSER="1")
    assert ci.startswith("rc=1") and "1 failed" in ci, ci
    assert "REQUIRE_BROWSER is set" in ci
