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

import csv
import io
import itertools
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import (
    Any,
    Callable,
    Dict,
    Iterator,
    List,
    Mapping,
    NamedTuple,
    Optional,
    Sequence,
    Tuple,
)

import torch
import torch.nn as nn
from captum.attr._utils.attribution import Attribution
from torch import Tensor

from captum_cams._utils.files import atomic_path
from captum_cams._utils.distributed import gather_by_index, is_main_process, shard_indices
from captum_cams._utils.inputs import (
    InputError,
    Preprocess,
    annotation_mask,
    check_image_file,
    open_image,
)
from captum_cams.attr import (
    LayerAblationCam,
    LayerCam,
    LayerGradCam,
    LayerGradCamPlusPlus,
    LayerIntegratedGradCam,
    LayerLibraCam,
    LayerLiftCam,
    LayerScoreCam,
    LayerShapCam,
    LayerXGradCam,
    ReferenceLibrary,
)
from captum_cams.metrics import (
    api_apd_auc,
    average_drop,
    average_probability_increase,
    bbox_score,
    deletion_auc,
    drop_rate,
    energy_pointing_game,
    increase_in_confidence,
    insertion_auc,
    pointing_game,
    threshold_sweep,
)
from captum_cams.tuning import ThresholdFineTuned, threshold_fine_tuning

__all__ = [
    "METHODS",
    "METRICS",
    "BenchmarkData",
    "EmbeddedData",
    "FolderData",
    "MethodContext",
    "MethodSpec",
    "MetricInputs",
    "MetricOutput",
    "MetricSpec",
    "BenchmarkResult",
    "on_layer",
    "parse_names",
    "run_benchmark",
    "results_json",
    "results_csv",
    "format_table",
    "write_atomic",
]

# --------------------------------------------------------------------------- data


class BenchmarkData:
    r"""
    Images to benchmark on, loaded a batch at a time by global index.

    Subclasses give ``__len__``, :meth:`load` and :meth:`names`; ``has_boxes`` says
    whether :meth:`load` returns ground-truth masks for the localisation metrics.

    Examples::

        >>> class Tensors(BenchmarkData):
        ...     def __init__(self, images): self.images = images
        ...     def __len__(self): return len(self.images)
        ...     def load(self, indices): return self.images[list(indices)], None, None
        ...     def names(self, indices): return [f"#{i}" for i in indices]
    """

    has_boxes: bool = False

    def __len__(self) -> int:
        raise NotImplementedError

    def load(self, indices: Sequence[int]) -> Tuple[Tensor, Optional[Tensor], Optional[Tensor]]:
        r"""
        Args:
            indices (sequence of int): global item indices.

        Returns:
            *tuple*: ``(images N x C x H x W, labels (N,) or None, masks N x 1 x H x W
            bool or None)``.
        """
        raise NotImplementedError

    def names(self, indices: Sequence[int]) -> List[str]:
        r"""
        Args:
            indices (sequence of int): global item indices.

        Returns:
            *list[str]*: a short name per item (a file path, or a class name).
        """
        raise NotImplementedError


class EmbeddedData(BenchmarkData):
    r"""
    The test split of the project's ground-truth dataset (seed 0), with object boxes.

    Args:
        num_images (int): how many items.

    Examples::

        >>> images, labels, masks = EmbeddedData(8).load(range(4))
        >>> masks.shape
        torch.Size([4, 1, 64, 64])
    """

    has_boxes = True

    def __init__(self, num_images: int) -> None:
        from captum_cams.datasets import GroundTruthShapes

        self.dataset = GroundTruthShapes(num_images, split="test", seed=0, return_annotations=True)

    def __len__(self) -> int:
        return len(self.dataset)

    def load(self, indices: Sequence[int]) -> Tuple[Tensor, Optional[Tensor], Optional[Tensor]]:
        from captum_cams.metrics import boxes_to_masks

        items = [self.dataset[i] for i in indices]
        images = torch.stack([item[0] for item in items])
        labels = torch.tensor([int(item[1]) for item in items], dtype=torch.long)
        boxes = torch.stack([item[2]["box"] for item in items])  # type: ignore[misc]
        return images, labels, boxes_to_masks(boxes, tuple(images.shape[-2:]))

    def names(self, indices: Sequence[int]) -> List[str]:
        from captum_cams.datasets import CLASSES

        return [f"#{i} {CLASSES[int(self.dataset[i][1])]}" for i in indices]


class FolderData(BenchmarkData):
    r"""
    Image files (an ``ImageFolder`` tree or a flat folder), optionally with
    Pascal-VOC annotations ``<annotations>/<image stem>.xml`` for the box metrics.

    Args:
        files (list[Path]): the image files, e.g. from
                    :func:`captum_cams._utils.inputs.list_images`.
        preprocess (Preprocess): how a file becomes the model's input.
        annotations (str, optional): the VOC ``Annotations`` folder. Default: None.
        root (str, optional): names are given relative to this folder. Default: None.

    Examples::

        >>> data = FolderData(list_images("val"), Preprocess(256, 224), "Annotations")
    """

    def __init__(
        self,
        files: Sequence[Path],
        preprocess: Preprocess,
        annotations: Optional[str] = None,
        root: Optional[str] = None,
    ) -> None:
        self.files = list(files)
        self.preprocess = preprocess
        self.annotations = annotations
        self.root = root
        self.has_boxes = annotations is not None
        for path in self.files:  # every bad file is found before any work starts
            check_image_file(path)
            if annotations is not None and not (Path(annotations) / f"{path.stem}.xml").is_file():
                raise InputError(
                    f"--annotations: no annotation {Path(annotations) / (path.stem + '.xml')} "
                    f"for image {path}"
                )

    def __len__(self) -> int:
        return len(self.files)

    def load(self, indices: Sequence[int]) -> Tuple[Tensor, Optional[Tensor], Optional[Tensor]]:
        images, masks = [], []
        for index in indices:
            picture = open_image(self.files[index])
            images.append(self.preprocess.image(picture))
            if self.annotations is not None:
                width, height = picture.size  # type: ignore[attr-defined]
                mask = annotation_mask(self.annotations, self.files[index], (height, width))
                masks.append(self.preprocess.mask(mask))
        return torch.stack(images), None, torch.stack(masks) if masks else None

    def names(self, indices: Sequence[int]) -> List[str]:
        return [
            os.path.relpath(self.files[i], self.root) if self.root else self.files[i].name
            for i in indices
        ]


# ------------------------------------------------------------------------ methods

#: Images drawn for Libra-CAM's reference library in the benchmark.
LIBRARY_IMAGES = 200


def _reference_batches(context: "MethodContext", batch_size: int = 50) -> Iterator[Any]:
    r"""``(images, labels)`` batches for a reference library: the ground-truth dataset's
    training split on the embedded default (never the evaluated test images), else the
    benchmark's own images labelled with the model's predictions."""
    if isinstance(context.data, EmbeddedData) or context.data is None:
        from captum_cams.datasets import GroundTruthShapes

        train = GroundTruthShapes(LIBRARY_IMAGES, split="train", seed=context.seed)
        for start in range(0, len(train), batch_size):
            items = [train[i] for i in range(start, min(start + batch_size, len(train)))]
            yield (
                torch.stack([item[0] for item in items]).to(context.device),
                torch.tensor([int(item[1]) for item in items], dtype=torch.long),
            )
        return
    data = context.data
    for start in range(0, min(len(data), LIBRARY_IMAGES), batch_size):
        images = data.load(range(start, min(start + batch_size, len(data), LIBRARY_IMAGES)))[0]
        images = images.to(context.device)
        with torch.no_grad():
            yield images, context.model(images).argmax(dim=1).cpu()


def libra_cam_with_library(context: "MethodContext") -> Attribution:
    r"""
    Libra-CAM with a reference library built for the benchmark's model and layer.

    The library (τ = 1e-4, R = 30) comes from :data:`LIBRARY_IMAGES` images: the
    ground-truth dataset's training split on the embedded default, or the first images
    of ``--data`` (labelled with the model's predictions) for real inputs.

    Args:
        context (MethodContext): the model, layer, data, device and seed.

    Returns:
        *LayerLibraCam*: ready to attribute.

    Examples::

        >>> METHODS["libracam"] = MethodSpec("Libra-CAM", libra_cam_with_library)
    """
    batches = _reference_batches(context)
    first = next(batches)
    with torch.no_grad():
        num_classes = int(context.model(first[0][:1]).shape[1])
    library = ReferenceLibrary.build(
        context.model,
        context.layer,
        itertools.chain([first], batches),
        num_classes=num_classes,
        progress=False,
    )
    return LayerLibraCam(context.model, context.layer, library=library)


class MethodContext(NamedTuple):
    r"""
    What a method's factory gets.

    Attributes:
        model (nn.Module): the model, on the benchmark's device, in eval mode.
        layer (nn.Module): the CAM layer.
        data (BenchmarkData or None): the benchmark's images (e.g. to build a
                    reference library); None for ``explain``.
        device (torch.device): where the model lives.
        seed (int): the run's seed.
    """

    model: nn.Module
    layer: nn.Module
    data: Optional[BenchmarkData]
    device: torch.device
    seed: int


@dataclass(frozen=True)
class MethodSpec:
    r"""
    One method of the benchmark.

    Args:
        title (str): the name in tables and figures.
        build (Callable[[MethodContext], Attribution]): makes the attribution.
        paper (str, optional): the paper's link. Default: ``""``.
        attribute_kwargs (dict, optional): extra ``attribute`` arguments.
                    Default: none.
        seeded (bool, optional): pass ``seed=`` (the run's seed plus the batch
                    index) to ``attribute``, for sampling methods. Default: False.

    Examples::

        >>> METHODS["gradcam"] = MethodSpec("Grad-CAM", on_layer(LayerGradCam))
    """

    title: str
    build: Callable[[MethodContext], Attribution]
    paper: str = ""
    attribute_kwargs: Mapping[str, Any] = field(default_factory=dict)
    seeded: bool = False


def on_layer(cls: Callable[[nn.Module, nn.Module], Attribution]) -> Callable[[MethodContext], Any]:
    r"""
    A factory for a Captum-style layer attribution class ``cls(model, layer)``.

    Args:
        cls (type): e.g. :class:`~captum_cams.attr.LayerGradCam`.

    Returns:
        *Callable[[MethodContext], Attribution]*: builds ``cls(context.model, context.layer)``.

    Examples::

        >>> MethodSpec("Layer-CAM", on_layer(LayerCam))
    """
    return lambda context: cls(context.model, context.layer)


#: The methods the benchmark and ``explain`` know, by command-line name.
METHODS: Dict[str, MethodSpec] = {
    "gradcam": MethodSpec("Grad-CAM", on_layer(LayerGradCam), "https://arxiv.org/abs/1610.02391"),
    "gradcam++": MethodSpec(
        "Grad-CAM++", on_layer(LayerGradCamPlusPlus), "https://arxiv.org/abs/1710.11063"
    ),
    "xgradcam": MethodSpec(
        "XGrad-CAM", on_layer(LayerXGradCam), "https://arxiv.org/abs/2008.02312"
    ),
    "layercam": MethodSpec(
        "Layer-CAM", on_layer(LayerCam), "https://doi.org/10.1109/TIP.2021.3089943"
    ),
    "ablationcam": MethodSpec(
        "Ablation-CAM",
        on_layer(LayerAblationCam),
        "https://openaccess.thecvf.com/content_WACV_2020/html/Desai_Ablation-CAM_Visual_"
        "Explanations_for_Deep_Convolutional_Network_via_Gradient-free_Localization_WACV_2020_"
        "paper.html",
    ),
    "scorecam": MethodSpec(
        "Score-CAM", on_layer(LayerScoreCam), "https://arxiv.org/abs/1910.01279"
    ),
    "liftcam": MethodSpec("LIFT-CAM", on_layer(LayerLiftCam), "https://arxiv.org/abs/2102.05228"),
    "shapcam": MethodSpec(
        "SHAP-CAM", on_layer(LayerShapCam), "https://arxiv.org/abs/2102.05228", seeded=True
    ),
    "igcam": MethodSpec(
        "Integrated Grad-CAM", on_layer(LayerIntegratedGradCam), "https://arxiv.org/abs/2102.07805"
    ),
    "tft": MethodSpec(
        "Grad-CAM + TFT",
        lambda c: ThresholdFineTuned(LayerGradCam(c.model, c.layer)),
        "https://doi.org/10.3390/app122412961",
    ),
    "libracam": MethodSpec(
        "Libra-CAM",
        lambda c: libra_cam_with_library(c),
        "https://www.ijcai.org/proceedings/2022/0442",
    ),
}


# ------------------------------------------------------------------------ metrics


class MetricInputs(NamedTuple):
    r"""
    What a metric gets for one batch of one method.

    Attributes:
        model (nn.Module): the model.
        images (Tensor): ``N x C x H x W`` inputs.
        maps (Tensor): the method's ``N x 1 x h x w`` maps.
        target (Tensor): ``(N,)`` the explained class.
        masks (Tensor or None): ``N x 1 x H x W`` bool ground truth, if any.
        max_examples_per_batch (int): most inputs per forward pass.
    """

    model: nn.Module
    images: Tensor
    maps: Tensor
    target: Tensor
    masks: Optional[Tensor]
    max_examples_per_batch: int


class MetricOutput(NamedTuple):
    r"""
    A metric's result for one batch.

    Attributes:
        values (Tensor): ``(N,)`` one value per example.
        curves (dict[str, Tensor]): named ``N x T`` curves (may be empty).
        grid (Tensor or None): the curves' ``(T,)`` abscissae.
    """

    values: Tensor
    curves: Dict[str, Tensor] = {}
    grid: Optional[Tensor] = None


@dataclass(frozen=True)
class MetricSpec:
    r"""
    One metric of the benchmark.

    Args:
        title (str): the column title.
        compute (Callable[[MetricInputs], MetricOutput]): the per-example values.
        higher_is_better (bool, optional): for the table's arrow. Default: True.
        percent (bool, optional): shown ×100 in the table. Default: False.
        needs_boxes (bool, optional): needs ground-truth masks. Default: False.

    Examples::

        >>> METRICS["drop"] = MetricSpec("AD %", lambda m: MetricOutput(average_drop(
        ...     m.model, m.images, m.maps, m.target)), higher_is_better=False, percent=True)
    """

    title: str
    compute: Callable[[MetricInputs], MetricOutput]
    higher_is_better: bool = True
    percent: bool = False
    needs_boxes: bool = False


def _confidence(function: Callable[..., Tensor]) -> Callable[[MetricInputs], MetricOutput]:
    def compute(m: MetricInputs) -> MetricOutput:
        return MetricOutput(
            function(
                m.model,
                m.images,
                m.maps,
                target=m.target,
                max_examples_per_batch=m.max_examples_per_batch,
            )  # fmt: skip
        )

    return compute


def _localization(function: Callable[..., Tensor]) -> Callable[[MetricInputs], MetricOutput]:
    def compute(m: MetricInputs) -> MetricOutput:
        assert m.masks is not None  # needs_boxes: never called without
        return MetricOutput(function(m.maps, m.masks))

    return compute


def _pointing(m: MetricInputs) -> MetricOutput:
    # TorchRay's 15 pixels are for 224 x 224 inputs: scaled to the images' size, so a
    # 64 x 64 image gets about 4 pixels, not a quarter of the image.
    assert m.masks is not None
    tolerance = 15.0 * min(m.images.shape[-2:]) / 224.0
    return MetricOutput(pointing_game(m.maps, m.masks, tolerance=tolerance))


def _sweep(m: MetricInputs) -> MetricOutput:
    sweep = threshold_sweep(
        m.model, m.images, m.maps, target=m.target, max_examples_per_batch=m.max_examples_per_batch
    )
    return MetricOutput(
        api_apd_auc(sweep, per_example=True), {"api": sweep.api, "apd": sweep.apd}, sweep.thresholds
    )


def _tft_rpi(m: MetricInputs) -> MetricOutput:
    result = threshold_fine_tuning(
        m.model, m.images, m.maps, target=m.target, max_examples_per_batch=m.max_examples_per_batch
    )
    return MetricOutput(
        result.rpi_curves.max(dim=1).values, {"rpi": result.rpi_curves}, result.grid
    )


#: The metrics of the benchmark, by command-line name.
METRICS: Dict[str, MetricSpec] = {
    "average_drop": MetricSpec("AD %", _confidence(average_drop), False, True),
    "increase_in_confidence": MetricSpec("IC %", _confidence(increase_in_confidence), True, True),
    "api": MetricSpec("API %", _confidence(average_probability_increase), True, True),
    "drop_rate": MetricSpec("DR %", _confidence(drop_rate), False, True),
    "insertion_auc": MetricSpec("Ins AUC", _confidence(insertion_auc), True),
    "deletion_auc": MetricSpec("Del AUC", _confidence(deletion_auc), False),
    "api_apd_auc": MetricSpec("API/APD AUC", _sweep, True),
    "tft_rpi": MetricSpec("best RPI", _tft_rpi, True),
    "energy_pg": MetricSpec(
        "Energy PG %", _localization(energy_pointing_game), True, True, needs_boxes=True
    ),
    "bbox": MetricSpec("Bbox %", _localization(bbox_score), True, True, needs_boxes=True),
    "pointing_game": MetricSpec("PG %", _pointing, True, True, needs_boxes=True),
}


def parse_names(text: Optional[str], known: Mapping[str, Any], option: str) -> List[str]:
    r"""
    A comma-separated list of registry names, checked.

    Args:
        text (str, optional): e.g. ``"gradcam,scorecam"``; None or ``"all"``: every name.
        known (dict): the registry.
        option (str): the option's name for the error, e.g. ``"--methods"``.

    Returns:
        *list[str]*: the names, in the order given, without repeats.

    Raises:
        InputError: an unknown or empty list.

    Examples::

        >>> parse_names("gradcam, scorecam", METHODS, "--methods")
        ['gradcam', 'scorecam']
    """
    if text is None or text.strip().lower() == "all":
        return list(known)
    names = list(dict.fromkeys(n.strip().lower() for n in text.split(",") if n.strip()))
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        what = "unknown " + ", ".join(unknown) if unknown else "none given"
        raise InputError(f"{option}: {what}; choose from {', '.join(known)}")
    return names


# -------------------------------------------------------------------------- run


@dataclass
class BenchmarkResult:
    r"""
    What :func:`run_benchmark` returns (on every process).

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
    """

    methods: List[str]
    metrics: List[str]
    rows: List[Dict[str, Any]]
    summary: Dict[str, Dict[str, Optional[float]]]
    curves: Dict[str, Dict[str, Dict[str, List[float]]]]
    seconds: Dict[str, float]
    files: List[Path] = field(default_factory=list)


def _plain(value: float) -> Optional[float]:
    return None if math.isnan(value) else value


def _run_batch(
    batch_index: int,
    indices: Sequence[int],
    data: BenchmarkData,
    model: nn.Module,
    attributions: Dict[str, Attribution],
    metrics: Sequence[str],
    device: torch.device,
    seed: int,
    max_examples_per_batch: int,
    keep_maps_below: int,
    progress: Any,
) -> Dict[str, Any]:
    images, labels, masks = data.load(indices)
    images = images.to(device)
    masks = masks.to(device) if masks is not None else None
    with torch.no_grad():
        target = model(images).argmax(dim=1)
    names = data.names(indices)
    rows: List[Dict[str, Any]] = []
    curves: Dict[str, Dict[str, Tensor]] = {}
    grids: Dict[str, List[float]] = {}
    kept: Dict[str, Tensor] = {}
    seconds: Dict[str, float] = {}
    for method, attribution in attributions.items():
        spec = METHODS[method]
        kwargs = dict(spec.attribute_kwargs)
        if spec.seeded:
            kwargs["seed"] = seed + batch_index
        torch.manual_seed(seed + batch_index)
        start = time.perf_counter()
        maps = attribution.attribute(images, target=target, **kwargs)
        seconds[method] = time.perf_counter() - start
        maps = maps.detach()
        inputs = MetricInputs(model, images, maps, target, masks, max_examples_per_batch)
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
    metrics: Sequence[str],
    out: Optional[str] = None,
    batch_size: int = 16,
    seed: int = 0,
    device: Optional[torch.device] = None,
    progress: bool = True,
    grid_images: int = 6,
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
        metrics (sequence of str): names of :data:`METRICS`; those that need boxes
                    require ``data.has_boxes``.
        out (str, optional): the output folder; None writes nothing.
                    Default: None.
        batch_size (int, optional): images per batch. Default: 16.
        seed (int, optional): the run's seed. Default: 0.
        device (torch.device, optional): where to compute. Default: the CPU.
        progress (bool, optional): a progress bar (on rank 0). Default: True.
        grid_images (int, optional): rows of the overlay figure. Default: 6.

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
    for name in methods:
        if name not in METHODS:
            raise InputError(f"--methods: unknown {name}; choose from {', '.join(METHODS)}")
    for name in metrics:
        if name not in METRICS:
            raise InputError(f"--metrics: unknown {name}; choose from {', '.join(METRICS)}")
        if METRICS[name].needs_boxes and not data.has_boxes:
            raise InputError(f"--metrics: {name} needs boxes; give --annotations")
    if batch_size < 1:
        raise InputError(f"--batch-size must be at least 1; got {batch_size}")
    num = len(data)
    model = model.to(device).eval()
    context = MethodContext(model, layer, data, device, seed)
    attributions = {name: METHODS[name].build(context) for name in methods}
    max_examples = max(64, batch_size)
    batches = [list(range(s, min(s + batch_size, num))) for s in range(0, num, batch_size)]
    mine = shard_indices(len(batches))
    bar = None
    if progress and is_main_process():
        bar = tqdm(total=len(mine) * len(methods), desc="captum-cams benchmark", unit="run")
    try:
        local = [
            (
                b,
                _run_batch(
                    b,
                    batches[b],
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
    return _merge(parts, methods, metrics, data, out, grid_images)


def _merge(
    parts: List[Dict[str, Any]],
    methods: Sequence[str],
    metrics: Sequence[str],
    data: BenchmarkData,
    out: Optional[str],
    grid_images: int,
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
    result = BenchmarkResult(list(methods), list(metrics), rows, summary, curves, seconds)
    if out is not None and is_main_process():
        result.files = _write(result, parts, data, Path(out), grid_images)
    return result


# ------------------------------------------------------------------------ output


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


def results_csv(result: BenchmarkResult) -> str:
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


def format_table(result: BenchmarkResult) -> str:
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


def _write(
    result: BenchmarkResult,
    parts: List[Dict[str, Any]],
    data: BenchmarkData,
    out: Path,
    grid_images: int,
) -> List[Path]:
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
        images, _, _ = data.load(range(count))
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
