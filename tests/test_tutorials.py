#!/usr/bin/env python3
"""The tutorials, checked from outside: each runs without error as ``jupyter nbconvert
--execute`` runs it (Jupyter's inline backend), its committed outputs are those it
produces now, its figures display, and its teaching cells hold no test code."""

import ast
import importlib.util
import re
from pathlib import Path
from typing import Any, List, Tuple

import nbformat
import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "tutorials").glob("*.ipynb"))

#: The largest a committed notebook may be, figures included.
MAX_NOTEBOOK_BYTES = 400_000


def _regenerate_module() -> Any:
    path = REPO / "tutorials" / "regenerate.py"
    spec = importlib.util.spec_from_file_location("regenerate", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _code_cells(notebook: nbformat.NotebookNode) -> List[nbformat.NotebookNode]:
    return [cell for cell in notebook.cells if cell.cell_type == "code"]


_ADDRESS = re.compile(r"0x[0-9a-fA-F]+")
_NUMBER = re.compile(r"-?\d+(?:\.(\d+))?(?:[eE]([+-]?\d+))?")


def _outputs(cell: nbformat.NotebookNode) -> List[Tuple[str, str]]:
    # what a reader sees: printed text, results' text, errors, and how many images
    seen: List[Tuple[str, str]] = []
    for output in cell.get("outputs", []):
        kind = output.output_type
        if kind == "stream":  # one stream may arrive in pieces, split where it was flushed
            if seen and seen[-1][0] == output.name:
                seen[-1] = (output.name, seen[-1][1] + output.text)
            else:
                seen.append((output.name, output.text))
        elif kind in ("execute_result", "display_data"):
            data = output.get("data", {})
            seen.append(("text", data.get("text/plain", "")))
            if "image/png" in data:
                seen.append(("image", "image/png"))
        elif kind == "error":
            seen.append(("error", f"{output.ename}: {output.evalue}"))
    return [(k, _ADDRESS.sub("0x…", text)) for k, text in seen]


def _last_digit(match: "re.Match[str]") -> float:
    decimals = len(match.group(1) or "")
    return 10.0 ** (int(match.group(2) or 0) - decimals)


def _same_text(committed: str, now: str) -> bool:
    # equal, except that a decimal number may differ by one unit of its last printed
    # digit (a rounding that falls the other way on another CPU); anything more is a
    # change
    if committed == now:
        return True
    if _NUMBER.sub("#", committed) != _NUMBER.sub("#", now):
        return False
    for a, b in zip(_NUMBER.finditer(committed), _NUMBER.finditer(now)):
        if a.group(0) == b.group(0):
            continue
        if a.group(1) is None and a.group(2) is None:
            return False  # whole numbers (counts, shapes, classes) must be equal
        if len(a.group(1) or "") != len(b.group(1) or "") or a.group(2) != b.group(2):
            return False  # printed to another precision or exponent: a change
        if abs(float(a.group(0)) - float(b.group(0))) > 1.001 * _last_digit(a):
            return False
    return True


def test_the_comparison_allows_a_last_digit_rounding_and_nothing_more() -> None:
    assert _same_text("AD 0.123, n = 6", "AD 0.124, n = 6")
    assert _same_text("{'p': 1.5e-05}", "{'p': 1.6e-05}")
    assert not _same_text("AD 0.123, n = 6", "AD 0.125, n = 6")
    assert not _same_text("AD 0.123, n = 6", "AD 0.123, n = 7")
    assert not _same_text("AD 0.123", "AD 0.1230")  # printed differently: a change
    assert not _same_text("Grad-CAM 0.123", "Score-CAM 0.123")


def _numbers(pattern: str, text: str) -> List[float]:
    return [float(value) for value in re.findall(pattern, text)]


def _energy_beats_the_box_share(text: str) -> None:
    share = max(_numbers(r"box share of the image[^:]*: \[?([\d.]+)", text))
    energies = _numbers(r"energy (?:inside the box: \[|in box )([\d.]+)", text)
    assert energies and min(energies) > share, (energies, share)


def _lift_and_ablation_find_the_shapley_values(text: str) -> None:
    similarity = {name: float(v) for name, v in re.findall(r"'([\w-]+)': ([\d.]+)", text)}
    assert similarity["LIFT-CAM"] >= 0.999 and similarity["Ablation-CAM"] >= 0.999, similarity
    assert similarity["Grad-CAM"] < similarity["LIFT-CAM"], similarity


def _steps_converge(text: str) -> None:
    distances = _numbers(r"\d+: ([\d.]+)", text.split("relative distance:")[1].split("}")[0])
    assert len(distances) == 4 and distances == sorted(distances, reverse=True), distances


def _calm_maps_sum_to_the_probabilities(text: str) -> None:
    sums = text.split("map sums:")[1].split("\n")[0]
    assert sums.split() == text.split("p(y | x):")[1].split("\n")[0].split()


def _relevance_sums_to_the_logit_less_the_bias(text: str) -> None:
    def row(label: str) -> List[float]:
        return _numbers(r"(-?[\d.]+)", text.split(label)[1].split("]")[0])

    sums, logits = row("sum of the channel weights:"), row("target logit − bias:")
    assert len(sums) == 4 and all(abs(a - b) <= 2e-4 for a, b in zip(sums, logits)), (sums, logits)
    assert row("convergence delta:") == row("output bias:")


def _no_blank_map(text: str) -> None:
    rows = re.findall(r"highest value per image \[([^\]]*)\]", text)
    assert len(rows) == 9 and all(min(_numbers(r"([\d.]+)", r)) > 0 for r in rows), rows


#: What each tutorial's text claims about its outputs, checked on every run (the
#: teaching cells print; these read what they printed).
CLAIMS = {
    "01_first_explanation.ipynb": [
        lambda text: "the same as by hand: True" in text,
        _energy_beats_the_box_share,
    ],
    "02_lift_cam_and_shap_cam.ipynb": [_lift_and_ablation_find_the_shapley_values],
    "03_integrated_grad_cam.ipynb": [_steps_converge],
    "04_libra_cam.ipynb": [lambda text: "the same after saving and loading: True" in text],
    "05_tft_and_aft.ipynb": [
        lambda text: "the same maps as threshold_fine_tuning: True" in text,
        lambda text: "layers before the CAM layer unchanged: True" in text,
    ],
    "06_calm.ipynb": [_calm_maps_sum_to_the_probabilities],
    "07_evaluating_methods.ipynb": [_energy_beats_the_box_share],
    "08_peer_methods.ipynb": [_no_blank_map, _relevance_sums_to_the_logit_less_the_bias],
}


def test_the_claims_fail_on_outputs_that_contradict_them() -> None:
    with pytest.raises(AssertionError):
        _energy_beats_the_box_share("box share of the image: 0.500\nGrad-CAM energy in box 0.400")
    with pytest.raises(AssertionError):
        _steps_converge("relative distance: {2: 0.1, 4: 0.2, 8: 0.05, 16: 0.01}")
    with pytest.raises(AssertionError):
        _lift_and_ablation_find_the_shapley_values(
            "{'Grad-CAM': 0.704, 'Ablation-CAM': 1.0, 'LIFT-CAM': 0.9}"
        )
    with pytest.raises(AssertionError):
        _calm_maps_sum_to_the_probabilities("map sums: [0.7, 0.8]\np(y | x): [0.7, 0.9]\n")
    with pytest.raises(AssertionError):
        _no_blank_map("SS-CAM maps (4, 1, 16, 16), highest value per image [0.2 0.  0.1 0.3]")
    with pytest.raises(AssertionError):
        _relevance_sums_to_the_logit_less_the_bias(
            "sum of the channel weights: [1. 2. 3. 4.]\ntarget logit − bias: [1. 2. 3. 5.]\n"
            "convergence delta: [0.1 0.1 0.1 0.1]\noutput bias: [0.1 0.1 0.1 0.1]"
        )
    _energy_beats_the_box_share("box share of the image: 0.100\nGrad-CAM energy in box 0.400")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_teaching_cells_hold_no_test_code(path: Path) -> None:
    notebook = nbformat.read(path, as_version=4)
    for number, cell in enumerate(_code_cells(notebook), start=1):
        source = "\n".join(
            line for line in cell.source.splitlines() if not line.lstrip().startswith(("%", "!"))
        )
        for node in ast.walk(ast.parse(source)):
            assert not isinstance(node, ast.Assert), f"{path.name}, code cell {number}: assert"
            if isinstance(node, ast.Call):
                name = getattr(node.func, "attr", getattr(node.func, "id", ""))
                assert not name.startswith("assert"), f"{path.name}, code cell {number}: {name}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_committed_with_outputs_and_small(path: Path) -> None:
    notebook = nbformat.read(path, as_version=4)
    cells = _code_cells(notebook)
    assert cells and all(cell.execution_count is not None for cell in cells), (
        f"{path.name} is committed without its outputs: run python tutorials/regenerate.py"
    )
    assert path.stat().st_size <= MAX_NOTEBOOK_BYTES, f"{path.name}: {path.stat().st_size} bytes"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_a_run_reproduces_the_committed_outputs(path: Path) -> None:
    pytest.importorskip("nbconvert", reason="nbconvert is part of the test extra")
    committed = nbformat.read(path, as_version=4)
    executed = _regenerate_module().execute(path)
    stale = f"run `python tutorials/regenerate.py tutorials/{path.name}` and commit the result"
    old, new = _code_cells(committed), _code_cells(executed)
    assert len(old) == len(new)
    for number, (before, after) in enumerate(zip(old, new), start=1):
        seen_before, seen_after = _outputs(before), _outputs(after)
        assert not [k for k, _ in seen_after if k == "error"], seen_after
        assert [k for k, _ in seen_before] == [k for k, _ in seen_after], (
            f"{path.name}, code cell {number}: outputs {[k for k, _ in seen_after]}, committed "
            f"{[k for k, _ in seen_before]}; {stale}"
        )
        for (kind, text_before), (_, text_after) in zip(seen_before, seen_after):
            assert _same_text(text_before, text_after), (
                f"{path.name}, code cell {number} ({kind}) now prints\n{text_after}\ncommitted:"
                f"\n{text_before}\n{stale}"
            )
    text = "\n".join(t for cell in new for kind, t in _outputs(cell) if kind != "image")
    for claim in CLAIMS.get(path.name, []):
        assert claim(text) is not False, f"{path.name}: a claim of its text no longer holds"
    images = sum(kind == "image" for cell in new for kind, _ in _outputs(cell))
    if path.name.startswith("01_"):
        # the first tutorial's figure shows inline under nbconvert --execute, Jupyter's
        # inline backend left in place by captum_cams
        assert images >= 1, "the first tutorial shows no figure"
