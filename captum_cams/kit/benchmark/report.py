#!/usr/bin/env python3
r"""The report: the printed table, ``results.json``, ``scores.csv`` and the figures."""

import csv
import io
import json
import os
import shutil
import signal
import tempfile
import textwrap
import threading
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import (
    Any,
    Dict,
    Iterator,
    List,
    Mapping,
    Optional,
    Sequence,
    Tuple,
)

import numpy as np
import torch

from captum_cams._utils.files import atomic_path
from captum_cams._utils.text import count_of
from captum_cams.kit.benchmark.data import BenchmarkData, as_data_batch
from captum_cams.kit.benchmark.methods import METHODS
from captum_cams.kit.benchmark.metrics import METRICS
from captum_cams.kit.benchmark.result import BenchmarkResult
from captum_cams.kit.inputs import InputError

__all__ = [
    "BENCHMARK_FILES",
    "BOOTSTRAP_RESAMPLES",
    "check_output_folder",
    "staged_output",
    "bootstrap_statistics",
    "TABLE_WIDTH",
    "format_table",
    "results_csv",
    "results_json",
    "separating_metrics",
    "write_atomic",
]


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


def results_json(result: BenchmarkResult) -> str:
    r"""
    The JSON text of ``results.json`` (no timings, so it is reproducible).

    Args:
        result (BenchmarkResult): a benchmark's result.

    Returns:
        *str*: methods, metrics (titles, descriptions, directions), per-method means,
        mean curves and per-example rows. Values are as the metric functions return
        them (fractions); the printed table and ``scores.csv`` show the metrics marked
        ``percent`` multiplied by 100.

    Examples::

        >>> json.loads(results_json(result))["summary"]["gradcam"]
    """
    payload = {
        "methods": {
            m: {"title": METHODS[m].title, "paper": METHODS[m].paper} for m in result.methods
        },
        "metrics": {
            m: {
                "title": METRICS[m].title,
                "description": METRICS[m].description,
                "higher_is_better": METRICS[m].higher_is_better,
                "percent": METRICS[m].percent,
                "scores_csv_column": _csv_column(m),
            }
            for m in result.metrics
        },
        "units": "values as the metric functions return them (fractions); the table and "
        "scores.csv show the metrics with percent = true multiplied by 100",
        "summary": result.summary,
        "statistics": result.statistics,
        "bootstrap": {
            "resamples": BOOTSTRAP_RESAMPLES,
            "level": 0.95,
            "seed": result.seed,
            "tied_with_best": "the 95 % paired-bootstrap interval of (method - best) contains 0",
        },
        "curves": result.curves,
        "examples": result.rows,
    }
    return json.dumps(payload, indent=1, allow_nan=False) + "\n"


def results_csv(result: BenchmarkResult) -> str:
    r"""
    The CSV text of ``scores.csv``: one line per example and method, in the printed
    table's units: the metrics shown in percent are multiplied by 100 and their
    columns named ``<metric>_percent``; the others keep their name and scale.

    Args:
        result (BenchmarkResult): a benchmark's result.

    Returns:
        *str*: ``index,image,label,target,method,<metric column>...`` lines; empty
        cells for missing values.

    Examples::

        >>> print(results_csv(result).splitlines()[0])
        index,image,label,target,method,average_drop_percent,...,insertion_auc,...
    """
    stream = io.StringIO()
    keys = ["index", "image", "label", "target", "method"]
    writer = csv.writer(stream, lineterminator="\n")
    writer.writerow(keys + [_csv_column(m) for m in result.metrics])
    scales = [100.0 if METRICS[m].percent else 1.0 for m in result.metrics]
    for row in result.rows:
        cells = ["" if row[key] is None else row[key] for key in keys]
        for metric, scale in zip(result.metrics, scales):
            value = row[metric]
            cells.append("" if value is None else value * scale if scale != 1.0 else value)
        writer.writerow(cells)
    return stream.getvalue()


def _csv_column(metric: str) -> str:
    return f"{metric}_percent" if METRICS[metric].percent else metric


#: Bootstrap resamples of the table's intervals and ties.
BOOTSTRAP_RESAMPLES = 2000
#: Most resample-by-image counts held at once (memory stays bounded for any n).
_CELLS_PER_CHUNK = 4_000_000


def _resample_counts(count: int, resamples: int, seed: int) -> Iterator[np.ndarray]:
    # each resample draws `count` images with replacement; a resample is held as how
    # often it drew each image (resamples x count), a chunk of resamples at a time
    generator = np.random.default_rng(seed)
    chunk = max(1, min(resamples, _CELLS_PER_CHUNK // max(count, 1)))
    for start in range(0, resamples, chunk):
        size = min(chunk, resamples - start)
        drawn = generator.integers(0, count, size=(size, count))
        drawn += np.arange(size)[:, None] * count
        yield np.bincount(drawn.ravel(), minlength=size * count).reshape(size, count)


def bootstrap_statistics(
    rows: Sequence[Mapping[str, Any]],
    methods: Sequence[str],
    metrics: Sequence[str],
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = 0,
    level: float = 0.95,
    higher_is_better: Optional[Mapping[str, bool]] = None,
) -> Dict[str, Dict[str, Dict[str, Any]]]:
    r"""
    Each method's mean of each metric with a percentile bootstrap interval over the
    images, and the methods statistically tied with the best.

    One set of resamples of the images is drawn and applied to every method and
    metric (a paired bootstrap). A method is tied with the best (the best mean in the
    metric's direction) when the ``level`` interval of the mean of (method − best)
    over the resampled images contains 0. Missing values (None) are dropped: from a
    method's mean, and pairwise from a difference.

    Args:
        rows (sequence of dict): one row per example and method, with ``index``,
                    ``method`` and one value (float or None) per metric, as
                    :attr:`BenchmarkResult.rows`.
        methods (sequence of str): the methods, in table order.
        metrics (sequence of str): the metric columns.
        resamples (int, optional): bootstrap resamples. Default: 2000.
        seed (int, optional): the resampling seed. Default: 0.
        level (float, optional): the intervals' coverage. Default: 0.95.
        higher_is_better (dict[str, bool], optional): each metric's direction.
                    Default: from :data:`METRICS`.

    Returns:
        *dict*: per method and metric ``mean``, ``ci_low``, ``ci_high``, ``n`` (the
        images with a value) and ``tied_with_best`` (True for the best itself; None
        values where a method has no value).

    Examples::

        >>> stats = bootstrap_statistics(result.rows, result.methods, result.metrics)
        >>> stats["gradcam"]["bbox"]["ci_low"], stats["gradcam"]["bbox"]["tied_with_best"]
    """
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1; got {resamples}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1); got {level}")
    tails = [50.0 * (1.0 - level), 50.0 * (1.0 + level)]
    images = sorted({int(row["index"]) for row in rows})
    position = {index: p for p, index in enumerate(images)}
    column = {method: j for j, method in enumerate(methods)}
    width = len(methods)
    # one column per (metric, method): the values, and the paired differences to the
    # metric's best method; NaN where a value is missing
    values = np.full((len(images), len(metrics) * width), np.nan)
    for row in rows:
        if row["method"] not in column:
            continue
        for k, metric in enumerate(metrics):
            if row.get(metric) is not None:
                values[position[int(row["index"])], k * width + column[row["method"]]] = row[metric]
    present = ~np.isnan(values)
    counts = present.sum(0)
    means = np.nansum(values, 0) / np.maximum(counts, 1)
    differences = np.full_like(values, np.nan)
    best: Dict[str, Optional[int]] = {}
    for k, metric in enumerate(metrics):
        block = slice(k * width, (k + 1) * width)
        higher = (
            METRICS[metric].higher_is_better
            if higher_is_better is None
            else higher_is_better[metric]
        )
        ranked = np.where(counts[block] > 0, means[block], -np.inf if higher else np.inf)
        best[metric] = (
            None
            if not counts[block].any()
            else int(np.argmax(ranked) if higher else np.argmin(ranked))
        )
        if best[metric] is not None:
            best_column = k * width + int(best[metric])  # type: ignore[arg-type]
            differences[:, block] = values[:, block] - values[:, [best_column]]
    columns = np.concatenate([values, differences], axis=1)
    valid = ~np.isnan(columns)
    filled = np.where(valid, columns, 0.0)
    weight_of_valid = valid.astype(np.float64)
    sampled = []
    for weights in _resample_counts(len(images), resamples, seed):
        weights = weights.astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            sampled.append((weights @ filled) / (weights @ weight_of_valid))
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a column without values
        low, high = np.nanpercentile(np.concatenate(sampled), tails, axis=0)
    statistics: Dict[str, Dict[str, Dict[str, Any]]] = {m: {} for m in methods}
    for k, metric in enumerate(metrics):
        for method, j in column.items():
            own, paired = k * width + j, values.shape[1] + k * width + j
            has = bool(counts[own] > 0)
            statistics[method][metric] = {
                "mean": float(means[own]) if has else None,
                "ci_low": float(low[own]) if has else None,
                "ci_high": float(high[own]) if has else None,
                "n": int(counts[own]),
                "tied_with_best": (
                    None
                    if not has
                    else bool(j == best[metric] or low[paired] <= 0.0 <= high[paired])
                ),
            }
    return statistics


def separating_metrics(
    statistics: Mapping[str, Mapping[str, Mapping[str, Any]]], metrics: Sequence[str]
) -> Dict[str, bool]:
    r"""
    Whether each metric separates the methods: the best and the worst method means
    differ by more than the largest half-width of a method's interval.

    Args:
        statistics (dict): :func:`bootstrap_statistics`' result.
        metrics (sequence of str): the metric columns.

    Returns:
        *dict[str, bool]*: per metric; False where fewer than two methods have values.

    Examples::

        >>> separating_metrics(result.statistics, result.metrics)["bbox"]
        True
    """
    separates = {}
    for metric in metrics:
        cells = [by[metric] for by in statistics.values() if by[metric]["mean"] is not None]
        if len(cells) < 2:
            separates[metric] = False
            continue
        spread = max(c["mean"] for c in cells) - min(c["mean"] for c in cells)
        widest = max((c["ci_high"] - c["ci_low"]) / 2.0 for c in cells)
        separates[metric] = bool(spread > widest)
    return separates


#: Widest line of the printed table: a terminal's 120 columns.
TABLE_WIDTH = 120

#: Resolution of the overlay grids (the benchmark's and ``explain``'s): a 64 px image is
#: drawn in 128 px, sharp, and a grid of every method's maps of noisy images or photos
#: stays a PNG of a few hundred kilobytes.
GRID_DPI = 80


def _markdown_rows(rows: Sequence[Sequence[str]]) -> List[str]:
    widths = [max(len(row[j]) for row in rows) for j in range(len(rows[0]))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(rows[0], widths)) + " |"]
    lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    lines += ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |" for r in rows[1:]]
    return lines


def _table_width(columns: Sequence[Sequence[str]]) -> int:
    # "| a | b |": each column is its widest cell plus 3 characters, and one more
    return sum(max(len(cell) for cell in column) + 3 for column in columns) + 1


def _wrapped(text: str, width: int) -> List[str]:
    # at spaces only, the lines after the first indented
    return textwrap.wrap(
        text, width, subsequent_indent="  ", break_long_words=False, break_on_hyphens=False
    )


def format_table(result: BenchmarkResult, width: int = TABLE_WIDTH) -> str:
    r"""
    The results printed by the command line, no line wider than ``width``: one
    Markdown table per group of metrics (:attr:`MetricSpec.group`; a group too wide
    is split), one row per method, the mean of each metric with the half-width of its
    95 % bootstrap interval (×100 for percentages, arrows for the better direction;
    ``*`` marks the best and the methods tied with it), the attribution time per
    image with the last group; then a legend: n, the marks, every column spelled out
    with its unit, and the metrics that do not separate the methods
    (:func:`separating_metrics`). ``results.json`` and ``scores.csv`` hold everything.

    Args:
        result (BenchmarkResult): a benchmark's result.
        width (int, optional): the widest line, in characters. Default: 120.

    Returns:
        *str*: the tables and the legend.

    Examples::

        >>> print(format_table(result))
    """
    names = [METHODS[m].title if m in METHODS else m for m in result.methods]
    images = len({int(row["index"]) for row in result.rows}) or 1
    sizes = set()
    columns: List[List[str]] = []  # per metric: its title, then one cell per method
    for metric in result.metrics:
        spec = METRICS[metric]
        column = [f"{spec.title} {'↑' if spec.higher_is_better else '↓'}"]
        scale = 100.0 if spec.percent else 1.0
        digits = 2 if spec.percent else 3
        for method in result.methods:
            cell = result.statistics.get(method, {}).get(metric)
            value = result.summary[method][metric] if cell is None else cell["mean"]
            if value is None:
                column.append("-")
                continue
            text = f"{value * scale:.{digits}f}"
            if cell is not None:
                sizes.add(cell["n"])
                half = (cell["ci_high"] - cell["ci_low"]) / 2.0 * scale
                text += f" ± {half:.{digits}f}" + ("*" if cell["tied_with_best"] else "")
            column.append(text)
        columns.append(column)
    time = ["ms / image"] + [f"{result.seconds[m] * 1000.0 / images:.1f}" for m in result.methods]
    # per group, its (metric, column) pairs; the time column, metric None, goes last
    groups: Dict[str, List[Tuple[Optional[str], List[str]]]] = {}
    for metric, column in zip(result.metrics, columns):
        groups.setdefault(METRICS[metric].group, []).append((metric, column))
    if not groups:
        groups[""] = []
    groups[list(groups)[-1]].append((None, time))
    label = ["method", *names]
    lines: List[str] = []
    for group, members in groups.items():
        tables: List[List[Tuple[Optional[str], List[str]]]] = [[]]
        for member in members:  # as many columns per table as the width allows
            if tables[-1] and _table_width([label, *(c for _, c in tables[-1]), member[1]]) > width:
                tables.append([])
            tables[-1].append(member)
        for table in tables:
            lines += ["", *_wrapped(group, width)]
            rows = [[label[i], *(column[i] for _, column in table)] for i in range(len(label))]
            lines += _markdown_rows(rows)
            for column_metric, _ in table:  # what each column is, right under its table
                about = (
                    METRICS[column_metric].description
                    if column_metric is not None
                    else "ms / image: the method's attribution time per image in milliseconds, "
                    f"the metrics not included (mean over {count_of(images, 'image')})"
                )
                lines += _wrapped(about, width)
    lines.append("")
    if sizes:
        n = str(min(sizes)) if len(sizes) == 1 else f"{min(sizes)}–{max(sizes)}"
        lines += _wrapped(
            f"mean ± half-width of the 95 % bootstrap interval over n = {n} "
            f"{'image' if n == '1' else 'images'}; * best, or tied with the best (paired "
            "bootstrap: the 95 % interval of the difference contains 0); ↑ higher is "
            "better, ↓ lower is better",
            width,
        )
    if sizes and len(result.methods) > 1:
        separates = separating_metrics(result.statistics, result.metrics)
        weak = [METRICS[m].title for m in result.metrics if not separates[m]]
        lines += _wrapped(
            "metrics that do not separate the methods (best − worst ≤ largest half-width): "
            + (", ".join(weak) if weak else "none"),
            width,
        )
    return "\n".join(lines[1:])


#: The files a benchmark run writes into ``--out`` (those it does not produce this time
#: are removed, so the folder never mixes two runs).
BENCHMARK_FILES = (
    "results.json",
    "scores.csv",
    "overlay_grid.png",
    "threshold_sweep.png",
    "rpi_curves.png",
)

_STAGE_PREFIX = ".captum-cams-"
_STAGE_SUFFIX = ".tmp"


def check_output_folder(out: "os.PathLike[str] | str", option: str = "--out") -> None:
    r"""
    Checks that files can be written into the folder ``out`` (created later if
    missing), leaving nothing behind: a bad output location fails before any work.

    Args:
        out (str or PathLike): the output folder.
        option (str, optional): the option's name for the error. Default: ``"--out"``.

    Raises:
        InputError: ``out`` is a file, lies under a file, or its folder (or the
        nearest existing folder above it) cannot be written.

    Examples::

        >>> check_output_folder("runs/a")
    """
    target = Path(out)
    if target.exists() and not target.is_dir():
        raise InputError(f"{option}: {out} is a file, not a folder")
    existing = target
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    if not existing.is_dir():
        raise InputError(f"{option}: {out} lies under {existing}, which is a file")
    try:  # a real write, so permissions, read-only file systems and root are all covered
        handle, probe = tempfile.mkstemp(prefix=_STAGE_PREFIX, suffix=_STAGE_SUFFIX, dir=existing)
    except OSError as error:
        raise InputError(f"{option}: cannot write into {existing}: {error.strerror}") from None
    os.close(handle)
    os.remove(probe)


def _remove_stale_stages(folder: Path, name: str) -> None:
    # an interrupted run's staging folder, <prefix><name>.<pid>.<random><suffix>, whose
    # process is gone; folders of runs still alive are left alone
    start = len(_STAGE_PREFIX) + len(name) + 1
    for path in folder.glob(f"{_STAGE_PREFIX}{name}.*{_STAGE_SUFFIX}"):
        try:
            os.kill(int(path.name[start:].split(".")[0]), 0)
        except ProcessLookupError:
            shutil.rmtree(path, ignore_errors=True)
        except (ValueError, OSError):
            continue


@contextmanager
def _sigint_held() -> Iterator[None]:
    # Ctrl-C waits until the block is done, then interrupts as usual
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: List[int] = []
    previous = signal.signal(signal.SIGINT, lambda number, frame: caught.append(number))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if caught:
        raise KeyboardInterrupt


@contextmanager
def staged_output(out: "os.PathLike[str] | str", names: Sequence[str]) -> Iterator[Path]:
    r"""
    A temporary folder beside ``out`` to write a run's files into. When the block
    succeeds they are moved into ``out`` together and the files of ``names`` that
    the run did not write are removed, so ``out`` holds one run's set, never a mix of
    two. When the block fails or is interrupted, ``out`` is left as it was and the
    temporary folder removed; one left by a killed run is removed by the next run.

    The move is one rename per file within a file system, with Ctrl-C held off until
    it is done.

    Args:
        out (str or PathLike): the output folder (created if missing).
        names (sequence of str): the file names a run may write.

    Returns:
        *Iterator[Path]*: the temporary folder.

    Examples::

        >>> with staged_output("runs/a", BENCHMARK_FILES) as stage:
        ...     write_atomic(stage / "results.json", text)
    """
    check_output_folder(out)
    target = Path(out).resolve()
    target.mkdir(parents=True, exist_ok=True)
    for folder in (target.parent, target):
        _remove_stale_stages(folder, target.name)
    prefix = f"{_STAGE_PREFIX}{target.name}.{os.getpid()}."
    try:
        stage = Path(tempfile.mkdtemp(prefix=prefix, suffix=_STAGE_SUFFIX, dir=target.parent))
    except OSError:  # the folder above cannot be written: stage inside out itself
        stage = Path(tempfile.mkdtemp(prefix=prefix, suffix=_STAGE_SUFFIX, dir=target))
    try:
        yield stage
        produced = sorted(path.name for path in stage.iterdir())
        with _sigint_held():
            for name in produced:
                os.replace(stage / name, target / name)
            for name in names:
                if name not in produced and (target / name).is_file():
                    os.remove(target / name)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _outline_caption(data: BenchmarkData, has_parts: bool, has_outlines: bool) -> str:
    # what the overlay grid's outlines and row labels are, in the data's own terms
    text = "Maps of the model's predicted class, one column per method; rows: the first images."
    if not has_outlines:
        return text
    if not has_parts:
        return text + " Cyan outlines: the annotated object boxes."
    dataset = getattr(data, "dataset", None)
    names = tuple(getattr(dataset, "part_names", ()))
    listed = f" ({', '.join(names)})" if names else ""
    text += f" Cyan outlines: the object's ground-truth parts{listed}, where they are visible."
    if getattr(data, "task", None) == "cluttered":
        from captum_cams.kit.datasets.cluttered import CLUTTERED_PART_NAMES, NUISANCE_PART

        decisive = [n for i, n in enumerate(CLUTTERED_PART_NAMES) if i != NUISANCE_PART]
        text += (
            f" The class is the set of {', '.join(decisive)} the object has; the "
            f"{CLUTTERED_PART_NAMES[NUISANCE_PART]} is drawn at random and never decides it."
        )
    return text


def write_outputs(
    result: BenchmarkResult,
    parts: List[Dict[str, Any]],
    data: BenchmarkData,
    out: Path,
    grid_images: int,
) -> List[Path]:
    r"""
    Writes ``results.json``, ``scores.csv`` and the figures into ``out`` (rank 0).

    Args:
        result (BenchmarkResult): the gathered result of :func:`run_benchmark`.
        parts (list[dict]): the processes' batches (maps per method, for the figures).
        data (BenchmarkData): the benchmark's images.
        out (Path): the output folder.
        grid_images (int): images shown in the overlay grid (0: no grid).

    Returns:
        *list[Path]*: the files written, in order.

    Examples::

        >>> files = write_outputs(result, parts, data, Path("out"), grid_images=4)
    """
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
        shown = as_data_batch(data.load(range(count)))
        outlines = shown.part_masks if shown.part_masks is not None else shown.masks
        maps = {
            METHODS[m].title: torch.cat([p["maps"][m] for p in parts if m in p["maps"]])[:count]
            for m in result.methods
        }
        figure = overlay_grid(
            shown.images,
            maps,
            row_titles=data.names(range(count)),
            outlines=outlines,
            caption=_outline_caption(data, shown.part_masks is not None, outlines is not None),
        )
        save_figure(figure, out / "overlay_grid.png", dpi=GRID_DPI)
        files.append(out / "overlay_grid.png")
    titled = {METHODS[m].title: result.curves.get(m, {}) for m in result.methods}
    if all("api_apd_auc.api" in c for c in titled.values()) and titled:
        figure = plot_threshold_sweep(
            torch.tensor(next(iter(titled.values()))["api_apd_auc.api"]["grid"]),
            {t: torch.tensor(c["api_apd_auc.api"]["mean"]) for t, c in titled.items()},
            {t: torch.tensor(c["api_apd_auc.apd"]["mean"]) for t, c in titled.items()},
        )
        save_figure(figure, out / "threshold_sweep.png")
        files.append(out / "threshold_sweep.png")
    if all("tft_rpi.rpi" in c for c in titled.values()) and titled:
        figure = plot_rpi_curves(
            torch.tensor(next(iter(titled.values()))["tft_rpi.rpi"]["grid"]),
            {t: torch.tensor(c["tft_rpi.rpi"]["mean"]) for t, c in titled.items()},
        )
        save_figure(figure, out / "rpi_curves.png")
        files.append(out / "rpi_curves.png")
    return files
