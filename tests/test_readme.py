#!/usr/bin/env python3
"""The README's two commands stay true: CI runs exactly its test command."""

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _readme_commands() -> list:
    lines = (REPO / "README.md").read_text().splitlines()
    start = lines.index("```bash") + 1
    return [line.split("#")[0].strip() for line in lines[start : start + 2]]


def test_first_command_installs_and_runs_the_main_job() -> None:
    install_and_run, _ = _readme_commands()
    assert "pip install ." in install_and_run and install_and_run.endswith("captum-cams")


def test_ci_runs_exactly_the_readme_test_command() -> None:
    _, test_command = _readme_commands()
    ci_lines = [line.strip() for line in (REPO / ".ci" / "run").read_text().splitlines()]
    assert test_command in ci_lines


def test_command_line_section_names_every_method_and_metric() -> None:
    from captum_cams.kit.benchmark import METHODS, METRICS
    from captum_cams.kit.cli import DEFAULT_NUM_IMAGES

    section = (REPO / "docs" / "command_line.md").read_text()
    missing = [name for name in [*METHODS, *METRICS] if f"`{name}`" not in section]
    assert not missing, f"docs/command_line.md lacks {missing}"
    assert f"default {DEFAULT_NUM_IMAGES} of the embedded default" in section
    text = (REPO / "README.md").read_text()
    tutorials = text[text.index("## Tutorials") :].split("##")[1]
    for notebook in sorted((REPO / "tutorials").glob("*.ipynb")):
        assert f"`{notebook.name}`" in tutorials, notebook.name


def test_guarantees_name_the_tests_that_hold_them() -> None:
    # that each named file exists: test_every_test_file_the_pages_name_exists
    section = (REPO / "docs" / "guarantees.md").read_text()
    assert len(re.findall(r"`(tests/[\w/]+\.py)`", section)) >= 8


def test_readme_is_short_and_its_links_resolve() -> None:
    text = (REPO / "README.md").read_text()
    assert len(text.splitlines()) <= 300
    links = re.findall(r"\]\(((?:docs|benchmarks)/[^)#]+)", text)
    assert len(links) >= 8
    missing = sorted({link for link in links if not (REPO / link).exists()})
    assert not missing, f"README links to missing files {missing}"
    figure = REPO / "docs" / "images" / "explain_next_to_captum.png"
    assert 20_000 < figure.stat().st_size < 400_000


def test_every_test_file_the_pages_name_exists() -> None:
    pages = [REPO / "README.md", REPO / "benchmarks" / "README.md"]
    pages += sorted((REPO / "docs").glob("*.md"))
    named = {path for page in pages for path in re.findall(r"(tests/[\w/]+\.py)", page.read_text())}
    assert len(named) >= 8
    missing = sorted(path for path in named if not (REPO / path).is_file())
    assert not missing, f"the pages name missing test files {missing}"


def test_readme_and_docs_hold_no_dates_or_issue_numbers() -> None:
    pages = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    for page in pages:
        text = page.read_text()
        assert not re.search(r"\b20\d\d-\d\d-\d\d\b", text), f"{page.name}: a date"
        assert not re.search(r"\b[Ii]ssue #?\d+", text), f"{page.name}: an issue number"
