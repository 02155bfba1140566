"""The front door holds: the README stays a short guide whose links lead somewhere, and
the tests depend on the product alone (neither the benchmarks nor the studies)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from tests.conftest import ROOT, run_script

README_LIMIT = 9000
LINK = re.compile(r"\]\(([^)\s]+)\)")


def anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation but '-' and '_' dropped, spaces
    to '-'."""
    found = set()
    for heading in re.findall(r"^#+ (.+)$", markdown, re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        found.add(slug)
    return found


def broken_links(path: Path) -> list[str]:
    """Relative links in PATH whose file, or whose #heading, does not exist."""
    broken = []
    for target in LINK.findall(path.read_text()):
        if re.match(r"[a-z]+:", target):
            continue  # http(s), mailto: outside this repository
        file_part, _, anchor = target.partition("#")
        linked = (path.parent / file_part).resolve() if file_part else path
        if not linked.exists():
            broken.append(target)
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked.read_text()):
            broken.append(target)
    return broken


def test_readme_is_a_short_guide():
    """Studies and history belong in docs/; the README stays a guide a newcomer reads."""
    size = len((ROOT / "README.md").read_bytes())
    assert size <= README_LIMIT, f"README.md is {size} bytes; move detail to docs/"


def test_readme_docs_and_studies_links_lead_somewhere():
    """Every figure in the README links to where it was measured: the link must resolve,
    to the file and to its heading."""
    pages = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", ROOT / "studies" / "README.md"]
    pages += sorted((ROOT / "docs").glob("*.md"))
    broken = {str(p.relative_to(ROOT)): b for p in pages if (b := broken_links(p))}
    assert not broken, broken


SOURCE_PATH = re.compile(r"`((?:pyimagesearch|bench|studies|tests)/[a-z0-9_/]+\.py)`")


def test_the_files_the_docs_name_exist():
    """design.md maps each concern to its file, and CONTRIBUTING and the docs name files:
    a module moved or renamed without them fails here. (Mutation: design.md naming
    `pyimagesearch/core/preprocessing.py`, where it was before the move to core/, fails.)"""
    pages = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", ROOT / "studies" / "README.md"]
    pages += sorted((ROOT / "docs").glob("*.md"))
    missing = {
        str(page.relative_to(ROOT)): sorted(set(gone))
        for page in pages
        if (gone := [p for p in SOURCE_PATH.findall(page.read_text()) if not (ROOT / p).exists()])
    }
    assert not missing, missing


def test_the_tests_import_neither_the_benchmarks_nor_the_studies():
    """The product's tests must not depend on research code: a study may change or go
    without a product test noticing. Studies are tested as commands in a fresh process."""
    offenders = []
    for path in sorted((ROOT / "tests").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            offenders += [
                f"{path.name}:{node.lineno} {name}"
                for name in names
                if name.split(".")[0] in {"bench", "studies"}
            ]
    assert not offenders, offenders


# A study's figure (an accuracy, a speed-up, a count of splits, the CPU it was measured
# on) changes with every study; --help says what an option does and its default.
STUDY_FIGURE = re.compile(
    r"\b0\.[5-9]\d{2}\b|\b\d+(\.\d+)?x (faster|float32|the legacy)|\bover (ten|fifteen|\d+) "
    r"splits\b|\bsplits? in (ten|fifteen|\d+)\b|\b(Xeon|EPYC)\b"
)


def test_no_help_text_quotes_a_study_figure():
    """Every command's --help, each in a fresh process as a user runs it. (Mutations:
    "0.946-0.959 over ten splits" in a recipe's PURPOSES, or "about 2.6x float32" back in
    --precision's help, fails naming the commands.)"""
    from pyimagesearch.commands import COMMANDS

    quoted = {}
    for name, (module, _) in COMMANDS.items():
        command = [f"{module}.py"] if "." not in module else ["-m", module]
        result = run_script(*command, "--help", timeout=120)
        assert result.returncode == 0, (name, result.stderr[-2000:])
        found = [match.group(0) for match in STUDY_FIGURE.finditer(" ".join(result.stdout.split()))]
        if found:
            quoted[name] = found
    assert not quoted, quoted
