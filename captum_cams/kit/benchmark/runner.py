#!/usr/bin/env python3
r"""The runner: :func:`run_benchmark` runs the chosen methods and metrics over a
:class:`~captum_cams.kit.benchmark.data.BenchmarkData` in fixed batches, sharded across
``torchrun`` processes and merged by batch index, and hands the merged result to the
report."""

import math
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
from captum.attr._utils.attribution import Attribution
from torch import Tensor

from captum_cams._utils.distributed import gather_by_index, is_main_process, rank_and_world_size
from captum_cams._utils.metric_scoring import shared_passes
from captum_cams.kit.benchmark.data import BenchmarkData, as_data_batch
from captum_cams.kit.benchmark.methods import METHODS, MethodContext
from captum_cams.kit.benchmark.metrics import METRICS, MetricInputs, metrics_for
from captum_cams.kit.benchmark.report import (
    BENCHMARK_FILES,
    bootstrap_statistics,
    check_output_folder,
    staged_output,
    write_outputs,
)
from captum_cams.kit.benchmark.result import BenchmarkResult
from captum_cams.metrics import api_apd_auc

__all__ = [
    "BenchmarkResult",
    "attribute_batch",
    "build_methods",
    "predicted_class",
    "run_benchmark",
]


def _plain(value: float) -> Optional[float]:
    return None if math.isnan(value) else value


def build_methods(methods: Sequence[str], context: MethodContext) -> Dict[str, Attribution]:
    r"""
    Builds every chosen method once, in order.

    Args:
        methods (sequence of str): names of :data:`METHODS`.
        context (MethodContext): the model, layer, data, device and seed.

    Returns:
        *dict[str, Attribution]*: name to its attribution, ready for
        :func:`attribute_batch`.

    Examples::

        >>> build_methods(["gradcam"], MethodContext(model, layer, None, device, 0))
    """
    for name in methods:
        if name not in METHODS:
            raise ValueError(f"methods: unknown {name!r}; choose from {', '.join(METHODS)}")
    return {name: METHODS[name].build(context) for name in methods}


def predicted_class(model: nn.Module, images: Tensor) -> Tensor:
    r"""
    The class each image is explained for: the model's prediction.

    Args:
        model (nn.Module): the model, in eval mode.
        images (Tensor): ``N x C x H x W`` inputs on the model's device.

    Returns:
        *Tensor*: ``(N,)`` the argmax of the model's output.

    Examples::

        >>> target = predicted_class(model, images)
    """
    with torch.no_grad():
        return model(images).argmax(dim=1)


def attribute_batch(
    method: str, attribution: Attribution, images: Tensor, target: Tensor, seed: int
) -> Tuple[Tensor, float]:
    r"""
    One method's maps for one batch, as the benchmark computes them: the spec's
    ``attribute_kwargs``, ``seed=`` for sampling methods, the random state seeded with
    ``seed`` first.

    Args:
        method (str): a name of :data:`METHODS`.
        attribution (Attribution): the method built by :func:`build_methods`.
        images (Tensor): ``N x C x H x W`` inputs.
        target (Tensor): ``(N,)`` the explained classes.
        seed (int): the batch's seed (the benchmark uses the run's seed plus the
                    batch index).

    Returns:
        *tuple[Tensor, float]*: the detached ``N x 1 x h x w`` maps and the seconds
        ``attribute`` took.

    Examples::

        >>> maps, seconds = attribute_batch("gradcam", gradcam, images, target, seed=0)
    """
    spec = METHODS[method]
    kwargs = dict(spec.attribute_kwargs)
    if spec.seeded:
        kwargs["seed"] = seed
    torch.manual_seed(seed)
    start = time.perf_counter()
    maps = attribution.attribute(images, target=target, **kwargs)
    return maps.detach(), time.perf_counter() - start


def _run_batch(
    batch_index: int,
    indices: Sequence[int],
    data: BenchmarkData,
    model: nn.Module,
    attributions: Dict[str, Attribution],
    metrics: Sequence[str],
    device: torch.device,
    seed: int,
    max_examples_per_batch: Optional[int],
    keep_maps_below: int,
    progress: Any,
) -> Dict[str, Any]:
    batch = as_data_batch(data.load(indices))
    images, labels = batch.images.to(device), batch.labels
    masks = batch.masks.to(device) if batch.masks is not None else None
    parts = batch.part_masks.to(device) if batch.part_masks is not None else None
    extras = {name: value.to(device) for name, value in batch.extras.items()}
    batch = batch._replace(images=images, masks=masks, part_masks=parts, extras=extras)
    with torch.no_grad():
        logits = model(images)
    target = logits.argmax(dim=1)
    names = data.names(indices)
    rows: List[Dict[str, Any]] = []
    curves: Dict[str, Dict[str, Tensor]] = {}
    grids: Dict[str, List[float]] = {}
    kept: Dict[str, Tensor] = {}
    seconds: Dict[str, float] = {}
    # One scope of shared passes per batch: the metrics take the images' outputs from
    # the pass above, and a sweep one method evaluates (TFT on Grad-CAM's maps) serves
    # the metric that needs the same sweep of another method's maps (best RPI of
    # Grad-CAM). Every method's maps are made first, so the attribution times are
    # each method's own work.
    with shared_passes() as shared:
        shared.remember_outputs(model, images, logits)
        with torch.no_grad():
            extras.update(data.ground_truth(model, batch, target))
        every_maps: Dict[str, Tensor] = {}
        for method, attribution in attributions.items():
            every_maps[method], seconds[method] = attribute_batch(
                method, attribution, images, target, seed + batch_index
            )
        for method, maps in every_maps.items():
            inputs = MetricInputs(
                model, images, maps, target, masks, max_examples_per_batch, extras,
                requested=tuple(metrics), shared={},
            )  # fmt: skip
            values: Dict[str, Tensor] = {}
            for metric in metrics:
                output = METRICS[metric].compute(inputs)
                values[metric] = output.values.detach().double().cpu()
                for curve, tensor in output.curves.items():
                    curves.setdefault(method, {})[f"{metric}.{curve}"] = tensor.double().cpu()
                    if output.grid is not None:
                        grids[f"{metric}.{curve}"] = [float(v) for v in output.grid.cpu()]
            for position, index in enumerate(indices):
                row: Dict[str, Any] = {
                    "index": int(index),
                    "image": names[position],
                    "label": None if labels is None else int(labels[position]),
                    "target": int(target[position]),
                    "method": method,
                }
                for metric in metrics:
                    row[metric] = _plain(float(values[metric][position]))
                rows.append(row)
            below = [p for p, index in enumerate(indices) if index < keep_maps_below]
            if below:
                kept[method] = maps[below].float().cpu()
            if progress is not None:
                progress.update(1)
    return {"rows": rows, "curves": curves, "grids": grids, "maps": kept, "seconds": seconds}


def run_benchmark(
    model: nn.Module,
    layer: nn.Module,
    data: BenchmarkData,
    methods: Sequence[str],
    metrics: Optional[Sequence[str]],
    out: Optional[str] = None,
    batch_size: int = 16,
    seed: int = 0,
    device: Optional[torch.device] = None,
    progress: bool = True,
    grid_images: int = 4,
    library_data: Optional[BenchmarkData] = None,
    class_names: Optional[Sequence[str]] = None,
) -> BenchmarkResult:
    r"""
    Runs every chosen method on every image and scores it with every chosen metric.

    Each example is explained for the model's predicted class. Items are processed
    in fixed batches ``[b·batch_size, (b+1)·batch_size)``; under ``torchrun`` the
    batches (not the items) are split across processes, so every batch is computed
    as in one process and all processes return the same result. The random state is
    seeded per batch with ``seed + b``.

    Args:
        model (nn.Module): the model, in eval mode.
        layer (nn.Module): the CAM layer (a module of ``model``).
        data (BenchmarkData): the images, e.g. :class:`EmbeddedData`.
        methods (sequence of str): names of :data:`METHODS`.
        metrics (sequence of str or None): names of :data:`METRICS`, each of
                    which must have what it needs (boxes: ``data.has_boxes``;
                    :attr:`MetricSpec.needs`: ``data.provides``), else an
                    :class:`InputError`; None: every metric the data allows (see
                    :func:`metrics_for`).
        out (str, optional): the output folder, checked before any work
                    (:func:`~captum_cams.kit.benchmark.report.check_output_folder`); the
                    files are staged and moved in together
                    (:func:`~captum_cams.kit.benchmark.report.staged_output`). None writes
                    nothing. Default: None.
        batch_size (int, optional): images per batch. Default: 16.
        seed (int, optional): the run's seed. Default: 0.
        device (torch.device, optional): where to compute. Default: the CPU.
        progress (bool, optional): a progress bar (on rank 0). Default: True.
        grid_images (int, optional): rows of the overlay figure. Default: 4.
        library_data (BenchmarkData, optional): the images Libra-CAM's reference
                    library is built from; None: from ``data`` (see
                    :func:`~captum_cams.kit.benchmark.methods.libra_cam_with_library`).
                    Default: None.
        class_names (sequence of str, optional): the model's class names by index;
                    each row then also has ``target_name``. Default: None.

    Returns:
        *BenchmarkResult*: rows, means, curves, timings and the files written.

    Examples::

        >>> model = load_embedded_default()
        >>> result = run_benchmark(model, embedded_default_layer(model), EmbeddedData(8),
        ...                        ["gradcam", "scorecam"], ["average_drop", "bbox"])
        >>> result.summary["scorecam"]["bbox"]
    """
    from tqdm.auto import tqdm

    device = torch.device("cpu") if device is None else device
    metrics = metrics_for(data, metrics)
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1; got {batch_size}")
    num = len(data)
    if out is not None and is_main_process():
        check_output_folder(out)  # before the first model pass: a bad --out costs nothing
    model = model.to(device).eval()
    context = MethodContext(model, layer, data, device, seed, library_data)
    attributions = build_methods(methods, context)
    max_examples = None  # rows per pass from the pass budget
    # batch b is items [b * batch_size, (b + 1) * batch_size): made when it runs, and this
    # process's batches are a range, so no list of batches (or of items) is ever built
    rank, world_size = rank_and_world_size()
    mine = range(rank, -(-num // batch_size), world_size)
    bar = None
    if progress and is_main_process():
        bar = tqdm(total=len(mine) * len(methods), desc="captum-cams benchmark", unit="run")
    try:
        local = [
            (
                b,
                _run_batch(
                    b,
                    list(range(b * batch_size, min((b + 1) * batch_size, num))),
                    data,
                    model,
                    attributions,
                    metrics,
                    device,
                    seed,
                    max_examples,
                    grid_images,
                    bar,
                ),
            )  # fmt: skip
            for b in mine
        ]
    finally:
        if bar is not None:
            bar.close()
    parts = gather_by_index(local)
    if class_names is not None:
        for part in parts:
            for row in part["rows"]:
                known = 0 <= row["target"] < len(class_names)
                row["target_name"] = class_names[row["target"]] if known else None
    return _merge(parts, methods, metrics, data, out, grid_images, seed)


def _merge(
    parts: List[Dict[str, Any]],
    methods: Sequence[str],
    metrics: Sequence[str],
    data: BenchmarkData,
    out: Optional[str],
    grid_images: int,
    seed: int,
) -> BenchmarkResult:
    rows = [row for part in parts for row in part["rows"]]
    rows.sort(key=lambda row: (methods.index(row["method"]), row["index"]))
    summary: Dict[str, Dict[str, Optional[float]]] = {}
    for method in methods:
        mine = [row for row in rows if row["method"] == method]
        summary[method] = {}
        for metric in metrics:
            values = [row[metric] for row in mine if row[metric] is not None]
            summary[method][metric] = sum(values) / len(values) if values else None
    curves: Dict[str, Dict[str, Dict[str, List[float]]]] = {}
    for method in methods:
        pieces = [part["curves"].get(method, {}) for part in parts]
        for key in pieces[0] if pieces else []:
            stacked = torch.cat([piece[key] for piece in pieces])
            grid = next(part["grids"][key] for part in parts if key in part["grids"])
            curves.setdefault(method, {})[key] = {
                "grid": grid,
                "mean": [float(v) for v in stacked.mean(0)],
            }
        api, apd = (
            curves.get(method, {}).get("api_apd_auc.api"),
            curves.get(method, {}).get("api_apd_auc.apd"),
        )
        if api is not None and apd is not None:
            auc = api_apd_auc((torch.tensor(api["mean"]), torch.tensor(apd["mean"])))
            summary[method]["api_apd_auc_of_mean_curve"] = float(auc)
    seconds = {m: sum(part["seconds"][m] for part in parts) for m in methods}
    statistics = bootstrap_statistics(rows, methods, metrics, seed=seed)
    result = BenchmarkResult(
        list(methods), list(metrics), rows, summary, curves, seconds, [], statistics, seed
    )
    if out is not None and is_main_process():
        with staged_output(out, BENCHMARK_FILES) as stage:
            written = write_outputs(result, parts, data, stage, grid_images)
        result.files = [Path(out) / path.name for path in written]
    return result
