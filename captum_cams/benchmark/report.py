#!/usr/bin/env python3
r"""The report: the printed table, ``results.json``, ``scores.csv`` and the figures."""

import csv
import io
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List

import torch

from captum_cams._utils.files import atomic_path
from captum_cams.benchmark.data import BenchmarkData, as_data_batch
from captum_cams.benchmark.methods import METHODS
from captum_cams.benchmark.metrics import METRICS

if TYPE_CHECKING:
    from captum_cams.benchmark.runner import BenchmarkResult

__all__ = ["format_table", "results_csv", "results_json", "write_atomic"]


def write_atomic(path: Path, text: str) -> None:
    r"""
    Writes a text file through a temporary file in the same folder and ``os.replace``:
    a reader never sees half a file.

    Args:
        path (Path): the destination.
        text (str): the content.

    Examples::

        >>> write_atomic(Path("out/results.json"), json.dumps(results))
    """
    with atomic_path(path) as temporary:
        temporary.write_text(text, encoding="utf-8", newline="")


def results_json(result: "BenchmarkResult") -> str:
    r"""
    The JSON text of ``results.json`` (no timings, so it is reproducible).

    Args:
        result (BenchmarkResult): a benchmark's result.

    Returns:
        *str*: methods, metrics (with titles), per-method means, mean curves and
        per-example rows.

    Examples::

        >>> json.loads(results_json(result))["summary"]["gradcam"]
    """
    payload = {
        "methods": {
            m: {"title": METHODS[m].title, "paper": METHODS[m].paper} for m in result.methods
        },
        "metrics": {m: {"title": METRICS[m].title} for m in result.metrics},
        "summary": result.summary,
        "curves": result.curves,
        "examples": result.rows,
    }
    return json.dumps(payload, indent=1, allow_nan=False) + "\n"


def results_csv(result: "BenchmarkResult") -> str:
    r"""
    The CSV text of ``scores.csv``: one line per example and method.

    Args:
        result (BenchmarkResult): a benchmark's result.

    Returns:
        *str*: ``index,image,label,target,method,<metric>...`` lines; empty cells for
        missing values.

    Examples::

        >>> print(results_csv(result).splitlines()[0])
        index,image,label,target,method,average_drop,...
    """
    stream = io.StringIO()
    columns = ["index", "image", "label", "target", "method", *result.metrics]
    writer = csv.DictWriter(stream, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in result.rows:
        writer.writerow({key: ("" if row[key] is None else row[key]) for key in columns})
    return stream.getvalue()


def format_table(result: "BenchmarkResult") -> str:
    r"""
    The results table printed by the command line: one row per method, the mean of
    each metric (×100 for percentages, arrows for the better direction) and seconds.

    Args:
        result (BenchmarkResult): a benchmark's result.

    Returns:
        *str*: a Markdown table.

    Examples::

        >>> print(format_table(result))
    """
    titles = [
        f"{METRICS[m].title} {'↑' if METRICS[m].higher_is_better else '↓'}" for m in result.metrics
    ]
    header = ["method", *titles, "seconds"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for method in result.methods:
        cells = [METHODS[method].title]
        for metric in result.metrics:
            value = result.summary[method][metric]
            scale = 100.0 if METRICS[metric].percent else 1.0
            cells.append(
                "-" if value is None else f"{value * scale:.2f}" if scale > 1 else f"{value:.3f}"
            )
        cells.append(f"{result.seconds[method]:.2f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_outputs(
    result: "BenchmarkResult",
    parts: List[Dict[str, Any]],
    data: BenchmarkData,
    out: Path,
    grid_images: int,
) -> List[Path]:
    r"""Writes ``results.json``, ``scores.csv`` and the figures into ``out`` (rank 0)."""
    import matplotlib.pyplot as plt

    from captum_cams.visualization import (
        overlay_grid,
        plot_rpi_curves,
        plot_threshold_sweep,
        save_figure,
    )

    files = [out / "results.json", out / "scores.csv"]
    write_atomic(files[0], results_json(result))
    write_atomic(files[1], results_csv(result))
    count = min(grid_images, len(data))
    if count > 0:
        images = as_data_batch(data.load(range(count))).images
        maps = {
            METHODS[m].title: torch.cat([part["maps"][m] for part in parts if m in part["maps"]])
            for m in result.methods
        }
        figure = overlay_grid(images, maps, row_titles=data.names(range(count)))
        save_figure(figure, out / "overlay_grid.png")
        plt.close(figure)
        files.append(out / "overlay_grid.png")
    titled = {METHODS[m].title: result.curves.get(m, {}) for m in result.methods}
    if all("api_apd_auc.api" in c for c in titled.values()) and titled:
        figure = plot_threshold_sweep(
            torch.tensor(next(iter(titled.values()))["api_apd_auc.api"]["grid"]),
            {t: torch.tensor(c["api_apd_auc.api"]["mean"]) for t, c in titled.items()},
            {t: torch.tensor(c["api_apd_auc.apd"]["mean"]) for t, c in titled.items()},
        )
        save_figure(figure, out / "threshold_sweep.png")
        plt.close(figure)
        files.append(out / "threshold_sweep.png")
    if all("tft_rpi.rpi" in c for c in titled.values()) and titled:
        figure = plot_rpi_curves(
            torch.tensor(next(iter(titled.values()))["tft_rpi.rpi"]["grid"]),
            {t: torch.tensor(c["tft_rpi.rpi"]["mean"]) for t, c in titled.items()},
        )
        save_figure(figure, out / "rpi_curves.png")
        plt.close(figure)
        files.append(out / "rpi_curves.png")
    return files
