#!/usr/bin/env python3
"""What a benchmark run returns: below both the runner that fills it and the report that
writes it."""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

__all__ = ["BenchmarkResult"]


@dataclass
class BenchmarkResult:
    r"""
    What :func:`~captum_cams.kit.benchmark.runner.run_benchmark` returns (on every process).

    Args:
        methods (list[str]): the method names run.
        metrics (list[str]): the metric names computed.
        rows (list[dict]): one row per example and method: ``index``, ``image``,
                    ``label``, ``target``, ``method`` and one value per metric.
        summary (dict): per method, the mean of each metric (and the AUC of the
                    mean API/APD curve).
        curves (dict): per method and curve name, the mean curve and its grid.
        seconds (dict[str, float]): the methods' attribution time, all processes.
        files (list[Path]): the files written (rank 0 only).
        statistics (dict): per method and metric, the mean with its 95 % bootstrap
                    interval, n and whether it is tied with the best
                    (:func:`~captum_cams.kit.benchmark.report.bootstrap_statistics`).
        seed (int): the run's seed (also the bootstrap's).

    Examples::

        >>> result = run_benchmark(model, layer, EmbeddedData(num_images=16), methods=["gradcam"])
        >>> result.statistics["gradcam"]["ad"]   # mean, 95 % interval, n, tied
    """

    methods: List[str]
    metrics: List[str]
    rows: List[Dict[str, Any]]
    summary: Dict[str, Dict[str, Optional[float]]]
    curves: Dict[str, Dict[str, Dict[str, List[float]]]]
    seconds: Dict[str, float]
    files: List[Path] = field(default_factory=list)
    statistics: Dict[str, Dict[str, Dict[str, Any]]] = field(default_factory=dict)
    seed: int = 0
