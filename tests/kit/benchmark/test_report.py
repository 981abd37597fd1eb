#!/usr/bin/env python3
"""The report's statistics on hand-made rows whose answer is known: bootstrap intervals
of the means, paired ties with the best, which metrics separate the methods, the table."""

import math
from typing import Dict, List, Optional, Sequence

import numpy as np
import pytest

from captum_cams.kit.benchmark import (
    BenchmarkResult,
    bootstrap_statistics,
    format_table,
    separating_metrics,
)

UP = {"score": True}  # higher is better
DOWN = {"score": False}


def _rows(columns: Dict[str, Sequence[Optional[float]]]) -> List[Dict]:
    return [
        {"index": i, "method": method, "score": value}
        for method, values in columns.items()
        for i, value in enumerate(values)
    ]


def _noise(count: int, seed: int = 0) -> List[float]:
    return [float(v) for v in np.random.default_rng(seed).normal(size=count)]


def test_identical_methods_are_tied_and_share_their_interval() -> None:
    values = _noise(30)
    stats = bootstrap_statistics(_rows({"a": values, "b": values}), ["a", "b"], ["score"], 500, 0,
                                 higher_is_better=UP)  # fmt: skip
    assert stats["a"]["score"] == stats["b"]["score"]
    assert stats["a"]["score"]["tied_with_best"] and stats["b"]["score"]["tied_with_best"]
    assert stats["a"]["score"]["n"] == 30
    assert stats["a"]["score"]["mean"] == pytest.approx(float(np.mean(values)), abs=1e-12)


@pytest.mark.parametrize("direction, best", [(UP, "high"), (DOWN, "low")])
def test_a_method_shifted_by_a_large_constant_is_not_tied(direction: Dict, best: str) -> None:
    values = _noise(20)
    rows = _rows({"low": values, "high": [v + 10.0 for v in values], "near": values})
    stats = bootstrap_statistics(rows, ["low", "high", "near"], ["score"], 500, 0, 0.95, direction)
    other = "low" if best == "high" else "high"
    assert stats[best]["score"]["tied_with_best"] is True
    assert stats[other]["score"]["tied_with_best"] is False
    # "near" equals "low" on every image: tied with the best exactly when low is the best
    assert stats["near"]["score"]["tied_with_best"] is (best == "low")


def test_a_small_paired_shift_is_found_though_the_intervals_overlap() -> None:
    # b = a + 0.1 on every image: the methods' own intervals overlap widely, but the
    # paired difference is exactly 0.1 on every resample
    values = _noise(25)
    stats = bootstrap_statistics(
        _rows({"a": values, "b": [v + 0.1 for v in values]}), ["a", "b"], ["score"], 500,
        higher_is_better=UP,
    )  # fmt: skip
    a, b = stats["a"]["score"], stats["b"]["score"]
    assert a["ci_high"] > b["ci_low"]  # overlapping
    assert b["tied_with_best"] is True and a["tied_with_best"] is False


def test_a_constant_column_has_an_interval_of_zero_width() -> None:
    stats = bootstrap_statistics(_rows({"a": [0.25] * 12}), ["a"], ["score"], 300,
                                 higher_is_better=UP)  # fmt: skip
    cell = stats["a"]["score"]
    assert cell["ci_low"] == cell["ci_high"] == cell["mean"] == 0.25


def test_the_interval_is_the_normal_approximation_for_many_images() -> None:
    values = _noise(400, seed=5)
    stats = bootstrap_statistics(_rows({"a": values}), ["a"], ["score"], 4000,
                                 higher_is_better=UP)  # fmt: skip
    cell = stats["a"]["score"]
    half = 1.959964 * float(np.std(values)) / math.sqrt(len(values))
    assert (cell["ci_high"] - cell["ci_low"]) / 2 == pytest.approx(half, rel=0.08)
    assert (cell["ci_high"] + cell["ci_low"]) / 2 == pytest.approx(cell["mean"], abs=0.2 * half)


def test_seeded_reproducibility() -> None:
    rows = _rows({"a": _noise(15), "b": _noise(15, seed=1)})
    first = bootstrap_statistics(rows, ["a", "b"], ["score"], 200, seed=3, higher_is_better=UP)
    again = bootstrap_statistics(rows, ["a", "b"], ["score"], 200, seed=3, higher_is_better=UP)
    other = bootstrap_statistics(rows, ["a", "b"], ["score"], 200, seed=4, higher_is_better=UP)
    assert first == again
    assert first["a"]["score"]["ci_low"] != other["a"]["score"]["ci_low"]


def test_missing_values_are_dropped_pairwise() -> None:
    values = _noise(10)
    # image 0: a huge value for a, none for b; elsewhere b = a + 1 exactly
    a = [1e6] + values[1:]
    b: List[Optional[float]] = [None] + [v + 1.0 for v in values[1:]]
    stats = bootstrap_statistics(_rows({"a": a, "b": b}), ["a", "b"], ["score"], 300,
                                 higher_is_better=UP)  # fmt: skip
    assert stats["b"]["score"]["n"] == 9 and stats["a"]["score"]["n"] == 10
    assert stats["b"]["score"]["mean"] == pytest.approx(float(np.mean(values[1:])) + 1.0)
    # a is the best by its mean, yet b beats it by exactly 1 on every shared image
    assert stats["a"]["score"]["tied_with_best"] is True
    assert stats["b"]["score"]["tied_with_best"] is False
    empty = bootstrap_statistics(_rows({"a": a, "c": [None] * 10}), ["a", "c"], ["score"], 50,
                                 higher_is_better=UP)  # fmt: skip
    assert empty["c"]["score"] == {
        "mean": None, "ci_low": None, "ci_high": None, "n": 0, "tied_with_best": None,
    }  # fmt: skip


def test_separating_metrics() -> None:
    values = _noise(20)
    rows = [
        {"index": i, "method": m, "apart": v + shift, "together": v}
        for m, shift in (("a", 0.0), ("b", 5.0))
        for i, v in enumerate(values)
    ]
    directions = {"apart": True, "together": True}
    stats = bootstrap_statistics(rows, ["a", "b"], ["apart", "together"], 300,
                                 higher_is_better=directions)  # fmt: skip
    assert separating_metrics(stats, ["apart", "together"]) == {"apart": True, "together": False}


def test_the_table_shows_intervals_ties_and_the_metrics_that_do_not_separate() -> None:
    values = _noise(8)
    rows = [
        {"index": i, "method": m, "average_drop": v + shift, "bbox": 0.5}
        for m, shift in (("gradcam", 0.0), ("scorecam", 3.0))
        for i, v in enumerate(values)
    ]
    methods, metrics = ["gradcam", "scorecam"], ["average_drop", "bbox"]
    stats = bootstrap_statistics(rows, methods, metrics, 300)
    summary = {m: {k: stats[m][k]["mean"] for k in metrics} for m in methods}
    seconds = {"gradcam": 0.0, "scorecam": 0.0}
    result = BenchmarkResult(methods, metrics, rows, summary, {}, seconds, statistics=stats)
    lines = format_table(result).splitlines()
    ad = stats["gradcam"]["average_drop"]
    half = (ad["ci_high"] - ad["ci_low"]) / 2 * 100
    # average drop: lower is better, so Grad-CAM is the best and Score-CAM is not tied;
    # AD (confidence) and Bbox (localisation) are printed in tables of their own
    first = lines.index(next(line for line in lines if line.startswith("| method")))
    assert lines[first].split("|")[2].strip() == "AD % ↓"
    cells = [cell.strip() for cell in lines[first + 2].split("|")]
    assert cells[1:3] == ["Grad-CAM", f"{ad['mean'] * 100:.2f} ± {half:.2f}*"]
    assert "| Score-CAM " in lines[first + 3] and lines[first + 3].split("|")[2].strip()[-1] != "*"
    bbox = next(i for i, line in enumerate(lines) if "| Bbox % ↑" in line)
    assert [c.strip() for c in lines[bbox + 2].split("|")][2] == "50.00 ± 0.00*"
    assert lines[bbox].split("|")[3].strip() == "ms / image"  # with the last table
    text = "\n".join(lines)
    assert "n = 8 images" in text and "* best, or tied with the best" in text
    assert lines[-1].endswith("do not separate the methods (best − worst ≤ largest half-width): "
                              "Bbox %")  # fmt: skip


def _full_result(count: int = 5, seconds: float = 2.0, unknown: bool = True) -> BenchmarkResult:
    # every registered method and metric, with a long unknown method name besides
    from captum_cams.kit.benchmark import METHODS, METRICS

    methods = [*METHODS, *(["a method with a rather long name"] if unknown else [])]
    metrics = list(METRICS)
    generator = np.random.default_rng(0)
    rows = [
        {
            "index": i,
            "image": f"#{i}",
            "label": 0,
            "target": 0,
            "method": m,
            **{k: float(generator.uniform(0.0, 1.0)) for k in metrics},
        }  # fmt: skip
        for m in methods
        for i in range(count)
    ]
    stats = bootstrap_statistics(rows, methods, metrics, 100)
    summary = {m: {k: stats[m][k]["mean"] for k in metrics} for m in methods}
    times = dict.fromkeys(methods, seconds)
    return BenchmarkResult(methods, metrics, rows, summary, {}, times, statistics=stats)


def test_the_table_fits_120_columns_and_states_every_unit() -> None:
    from captum_cams.kit.benchmark import METRICS

    result = _full_result(count=5, seconds=2.0)
    text = format_table(result)
    assert max(len(line) for line in text.splitlines()) <= 120
    assert max(len(line) for line in format_table(result, width=80).splitlines()) <= 80
    for metric in result.metrics:  # every column is spelled out, with its unit
        spec = METRICS[metric]
        assert spec.description and spec.description.split()[0] in text.replace("\n", " ")
        assert f"{spec.title} {'↑' if spec.higher_is_better else '↓'}" in text
        assert "% of" in spec.description if spec.percent else "% of" not in spec.description
    # seconds per what: 2 s over 5 images is 400 ms per image
    assert "ms / image" in text and "| 400.0 " in text
    assert "per image in milliseconds" in text and "mean over 5 images" in text
    # every method row, in every table
    tables = text.count("| method ")
    assert tables >= 4 and text.count("| a method with a rather long name ") == tables


def test_one_image_is_one_image() -> None:
    text = format_table(_full_result(count=1))
    assert "n = 1 image;" in text and "mean over 1 image)" in text and "1 images" not in text


def test_scores_csv_is_in_the_units_of_the_table() -> None:
    import csv
    import io

    from captum_cams.kit.benchmark import METRICS, results_csv, results_json

    result = _full_result(count=3, unknown=False)
    table = list(csv.DictReader(io.StringIO(results_csv(result))))
    assert len(table) == len(result.rows)
    for line, row in zip(table, result.rows):
        for metric in result.metrics:
            if METRICS[metric].percent:
                assert float(line[f"{metric}_percent"]) == pytest.approx(100 * row[metric])
                assert metric not in line
            else:
                assert float(line[metric]) == row[metric]
    described = __import__("json").loads(results_json(result))["metrics"]
    assert described["average_drop"]["scores_csv_column"] == "average_drop_percent"
    assert described["insertion_auc"]["scores_csv_column"] == "insertion_auc"
    assert described["bbox"]["percent"] is True and "% of" in described["bbox"]["description"]
