#!/usr/bin/env python3
"""The result of a benchmark run: its fields, documented, with fresh defaults."""

import dataclasses
import inspect
import re
from pathlib import Path

from captum_cams.kit.benchmark.result import BenchmarkResult


def _result() -> BenchmarkResult:
    return BenchmarkResult(
        methods=["gradcam"],
        metrics=["ad"],
        rows=[{"index": 0, "image": "a.jpg", "label": 1, "target": 1, "method": "gradcam"}],
        summary={"gradcam": {"ad": 0.25}},
        curves={"gradcam": {"api": {"mean": [0.0, 1.0], "grid": [0.0, 1.0]}}},
        seconds={"gradcam": 0.5},
    )


def test_every_field_is_documented_in_order() -> None:
    documented = re.findall(r"^    (\w+) \(", inspect.getdoc(BenchmarkResult) or "", re.M)
    assert documented == [f.name for f in dataclasses.fields(BenchmarkResult)]


def test_defaults_are_fresh_for_every_result() -> None:
    first, second = _result(), _result()
    assert first.files == [] and first.statistics == {} and first.seed == 0
    first.files.append(Path("results.json"))
    first.statistics["gradcam"] = {"ad": {"mean": 0.25}}
    assert second.files == [] and second.statistics == {}


def test_round_trips_through_its_fields() -> None:
    result = _result()
    result.seed = 7
    copy = BenchmarkResult(**dataclasses.asdict(result))
    assert copy == result and copy is not result
    copy.seed = 8
    assert copy != result
