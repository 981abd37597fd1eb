#!/usr/bin/env python3
r"""The benchmark behind ``captum-cams benchmark``: every method, every metric, one table.

Two registries say what runs. :data:`METHODS` maps a command-line name to a
:class:`MethodSpec` (a title, a factory that builds the Captum attribution from a
:class:`MethodContext`, the paper); adding a method is one line::

    METHODS["libracam"] = MethodSpec("Libra-CAM", lambda c: LayerLibraCam(c.model, c.layer, ...))

:data:`METRICS` maps a name to a :class:`MetricSpec` (one value per example from
:mod:`captum_cams.metrics`, optionally with curves). :func:`run_benchmark` runs the
chosen pairs over a :class:`BenchmarkData` in fixed batches; under ``torchrun`` the
batches are split across processes with :func:`~captum_cams._utils.distributed.shard_indices`
and merged with :func:`~captum_cams._utils.distributed.gather_by_index`, so every batch
is computed exactly as in one process and the written JSON is the same. Only rank 0
writes: ``results.json`` and ``scores.csv`` (per-example scores, atomically: a
temporary file, then ``os.replace``), ``overlay_grid.png``, ``threshold_sweep.png``
and ``rpi_curves.png``.
"""

from captum_cams.kit.benchmark.data import (
    BenchmarkData,
    DataBatch,
    EmbeddedData,
    FolderData,
    as_data_batch,
)
from captum_cams.kit.benchmark.methods import (
    DEFAULT_METHODS,
    LIBRARY_IMAGES,
    LIBRARY_NEEDED,
    METHODS,
    MethodContext,
    MethodSpec,
    libra_cam_with_library,
    on_layer,
    parse_names,
)
from captum_cams.kit.benchmark.metrics import (
    DEFAULT_METRICS,
    METRICS,
    MetricInputs,
    MetricOutput,
    MetricSpec,
    metrics_for,
)
from captum_cams.kit.benchmark.report import (
    BENCHMARK_FILES,
    BOOTSTRAP_RESAMPLES,
    bootstrap_statistics,
    check_output_folder,
    format_table,
    results_csv,
    results_json,
    separating_metrics,
    staged_output,
    write_atomic,
)
from captum_cams.kit.benchmark.runner import (
    BenchmarkResult,
    attribute_batch,
    build_methods,
    predicted_class,
    run_benchmark,
)

__all__ = [
    "DEFAULT_METHODS",
    "DEFAULT_METRICS",
    "METHODS",
    "METRICS",
    "BenchmarkData",
    "DataBatch",
    "as_data_batch",
    "EmbeddedData",
    "FolderData",
    "MethodContext",
    "MethodSpec",
    "MetricInputs",
    "MetricOutput",
    "MetricSpec",
    "metrics_for",
    "BenchmarkResult",
    "LIBRARY_IMAGES",
    "LIBRARY_NEEDED",
    "libra_cam_with_library",
    "on_layer",
    "parse_names",
    "run_benchmark",
    "build_methods",
    "attribute_batch",
    "predicted_class",
    "results_json",
    "results_csv",
    "format_table",
    "bootstrap_statistics",
    "separating_metrics",
    "BOOTSTRAP_RESAMPLES",
    "BENCHMARK_FILES",
    "check_output_folder",
    "staged_output",
    "write_atomic",
]
