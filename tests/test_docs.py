#!/usr/bin/env python3
"""The API reference: Sphinx builds it without a warning, and every public name has
the sections of Captum's docstrings."""

import importlib
import inspect
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import captum_cams

REPO = Path(__file__).resolve().parents[1]

#: Modules whose ``__all__`` is the public API.
PUBLIC_MODULES = [
    "captum_cams",
    "captum_cams.attr",
    "captum_cams.metrics",
    "captum_cams.tuning",
    "captum_cams.kit.datasets",
    "captum_cams.kit.models",
    "captum_cams.visualization",
    "captum_cams.kit.benchmark",
    "captum_cams.kit.cli",
]


def _missing_sections(obj: object) -> list:
    doc = inspect.getdoc(obj) or ""
    if not doc:
        return ["a docstring"]
    if inspect.isclass(obj) and issubclass(obj, BaseException):
        return []
    missing = []
    if inspect.isclass(obj):
        holder = issubclass(obj, tuple) or hasattr(obj, "__dataclass_fields__")
        parameters = [] if issubclass(obj, tuple) else list(inspect.signature(obj).parameters)
        if holder:  # result and option records: their fields are documented
            if "Attributes:" not in doc and "Args:" not in doc:
                missing.append("Attributes: or Args:")
        elif parameters and "Args:" not in doc:
            missing.append("Args:")
    else:
        signature = inspect.signature(obj)  # type: ignore[arg-type]
        if signature.parameters and "Args:" not in doc:
            missing.append("Args:")
        if signature.return_annotation not in (None, "None") and "Returns:" not in doc:
            missing.append("Returns:")
    if "Examples::" not in doc:
        missing.append("Examples::")
    return missing


def _public_names() -> dict:
    """Every public class and function: the packages' ``__all__`` and the names each
    public module (no ``_`` in its dotted path) defines without a leading ``_``."""
    names = {}
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        assert hasattr(module, "__all__"), f"{module_name} has no __all__"
        for name in module.__all__:
            names[f"{module_name}.{name}"] = getattr(module, name)
    for info in pkgutil.walk_packages(captum_cams.__path__, "captum_cams."):
        if any(part.startswith("_") for part in info.name.split(".")):
            continue
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            if not name.startswith("_") and getattr(obj, "__module__", None) == info.name:
                names.setdefault(f"{info.name}.{name}", obj)
    return names


def test_every_public_name_has_args_returns_examples() -> None:
    problems = []
    for qualified, obj in _public_names().items():
        if not (inspect.isclass(obj) or inspect.isfunction(obj)):
            continue
        missing = _missing_sections(obj)
        if missing:
            problems.append(f"{qualified}: no {', '.join(missing)}")
    assert not problems, "\n".join(problems)


def test_sphinx_builds_without_warnings(tmp_path: Path) -> None:
    pytest.importorskip("sphinx", reason="sphinx is part of the test extra")
    result = subprocess.run(
        [sys.executable, "-m", "sphinx", "-j", "auto", "-W", "--keep-going", "-q", "-b", "html",
         str(REPO / "sphinx"), str(tmp_path / "html")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "WARNING" not in result.stderr, result.stderr
    page = (tmp_path / "html" / "attr.html").read_text()
    assert "LayerGradCamPlusPlus" in page and "Examples" in page
    assert (tmp_path / "html" / "benchmark.html").read_text().count("run_benchmark") > 1
