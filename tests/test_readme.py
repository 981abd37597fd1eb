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

    text = (REPO / "README.md").read_text()
    section = text[text.index("## Command line") : text.index("## Tutorials")]
    missing = [name for name in [*METHODS, *METRICS] if f"`{name}`" not in section]
    assert not missing, f"README's Command line section lacks {missing}"
    assert f"default {DEFAULT_NUM_IMAGES} of the embedded default" in section
    tutorials = text[text.index("## Tutorials") :].split("##")[1]
    for notebook in sorted((REPO / "tutorials").glob("*.ipynb")):
        assert f"`{notebook.name}`" in tutorials, notebook.name


def test_guarantees_name_test_files_that_exist() -> None:
    text = (REPO / "README.md").read_text()
    section = text[text.index("## Guarantees") :].split("\n## ")[0]
    named = re.findall(r"`(tests/[\w/]+\.py)`", section)
    assert len(named) >= 8
    missing = [path for path in named if not (REPO / path).is_file()]
    assert not missing, f"README's Guarantees section names missing tests {missing}"
