"""What the project says it needs is what it needs: one Python floor, one list of runtime pins."""

import re
import tomllib
from importlib.metadata import PackageNotFoundError, metadata

from packaging.specifiers import SpecifierSet

from tests.conftest import ROOT

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def requirement_lines(name: str) -> list[str]:
    lines = (ROOT / name).read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def test_pyproject_declares_exactly_the_runtime_requirements():
    assert PYPROJECT["project"]["dependencies"] == requirement_lines("requirements.txt")


def test_test_and_lint_tools_are_not_runtime_requirements():
    runtime = {re.split("[=<>]", line)[0] for line in requirement_lines("requirements.txt")}
    assert not runtime & {"pytest", "ruff", "onnxruntime", "ai-edge-litert"}
    dev = requirement_lines("requirements-dev.txt")
    assert dev[0] == "-r requirements.txt"
    assert {"pytest", "ruff"} <= {re.split("[=<>]", line)[0] for line in dev[1:]}


def test_python_floor_is_the_same_wherever_it_is_stated():
    """numpy 2.4 and datetime.UTC (train.py) need 3.11. A user reads the floor in the
    README, pip reads pyproject.toml, CI checks it in .ci/run: each floor they state,
    wherever it appears, is the same one. (Mutations: the README saying "Python 3.10+"
    in its set-up, or .ci/run checking (3, 12), fails.)"""
    assert PYPROJECT["project"]["requires-python"] == ">=3.11"
    floor = PYPROJECT["project"]["requires-python"].removeprefix(">=")
    readme = re.findall(r"Python (\d+\.\d+)\+", (ROOT / "README.md").read_text())
    assert readme and set(readme) == {floor}, readme
    ci = re.findall(r"sys\.version_info < \((\d+), (\d+)\)", (ROOT / ".ci/run").read_text())
    assert ci and {".".join(found) for found in ci} == {floor}, ci


def test_every_pinned_package_installs_on_the_python_floor():
    """The floor is not stale: each runtime pin (as installed here) accepts the lowest
    Python the project claims. A pin that needs a newer Python fails here, naming it."""
    floor = PYPROJECT["project"]["requires-python"].removeprefix(">=")
    needs = {}
    for line in requirement_lines("requirements.txt"):
        name, pinned = line.split("==")
        try:
            installed = metadata(name)
        except PackageNotFoundError:
            continue
        if installed["Version"] != pinned:  # another version's floor would prove nothing
            continue
        needs[name] = installed.get("Requires-Python") or ""
    assert needs["numpy"], "numpy's own floor is what the project's follows"
    too_new = {name: spec for name, spec in needs.items() if floor not in SpecifierSet(spec)}
    assert not too_new, f"requires-python >={floor}, but these pins need more: {too_new}"


# A results file written by a run keeps the paths it was given (the dataset, the output
# folder); committed, they would tell where someone's machine keeps its files and make
# the docs' commands fail for everyone else. The committed ones name `cell_images/...`.
LOCAL_PATH = re.compile(r"""(^|[\s"',=(])/(tmp|home|work|root|mnt|Users|var|opt)/""", re.M)


def test_committed_results_name_no_local_absolute_path():
    found = [
        f"{path.relative_to(ROOT)}: {match.group(0).strip()}"
        for path in sorted((ROOT / "docs").rglob("*"))
        if path.suffix in {".csv", ".json", ".md"}
        for match in [LOCAL_PATH.search(path.read_text(errors="replace"))]
        if match
    ]
    assert not found, found


def test_pip_install_puts_the_commands_on_path(tmp_path):
    """pip install . gives console commands whose --help runs (in a venv that sees this
    machine's packages, so nothing is downloaded; the project is copied, so no build
    files land in the checkout). Mutation: dropping [project.scripts] or the py-modules
    line (load-model then fails to import load_model) fails it."""
    import shutil
    import subprocess
    import sys

    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True)
    source = tmp_path / "source"
    for name in tracked.stdout.splitlines():
        if (ROOT / name).is_file() and not name.startswith(("docs/", "studies/")):
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--no-deps",
           "--no-build-isolation", "--disable-pip-version-check", str(source)]  # fmt: skip
    installed = subprocess.run(pip, capture_output=True, text=True, timeout=300)
    assert installed.returncode == 0, installed.stderr[-3000:]
    outside = tmp_path / "elsewhere"  # not the checkout, so the installed files are used
    outside.mkdir()
    for command in ("pyimagesearch", "save-model", "load-model", "serve-model"):
        shown = subprocess.run([str(venv / "bin" / command), "--help"], cwd=outside,
                               capture_output=True, text=True, timeout=120)  # fmt: skip
        assert shown.returncode == 0, (command, shown.stderr[-2000:])
        assert "usage:" in shown.stdout
    listed = subprocess.run([str(venv / "bin" / "pyimagesearch"), "train", "--help"],
                            cwd=outside, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert "usage: pyimagesearch train" in listed.stdout and "--dataset" in listed.stdout
