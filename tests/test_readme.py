#!/usr/bin/env python3
"""The README's two commands stay true: CI runs exactly its test command."""

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
