#!/usr/bin/env python3
r"""The metric registry: :data:`METRICS` maps a command-line name to a :class:`MetricSpec`
that turns a :class:`MetricInputs` (one batch of one method) into a :class:`MetricOutput`
(one value per example, optionally curves)."""

from dataclasses import dataclass
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple

import torch.nn as nn
from torch import Tensor

from captum_cams.kit.benchmark.data import BenchmarkData
from captum_cams.kit.inputs import InputError
from captum_cams.metrics import (
    api_apd_auc,
    bbox_score,
    confidence_scores,
    deletion_auc,
    energy_pointing_game,
    ignored_region_mass,
    insertion_auc,
    pointing_game,
    reliance_rank_correlation,
    road,
    threshold_sweep,
)
from captum_cams.metrics.confidence import DEFAULT_SWEEP_THRESHOLDS
from captum_cams.tuning import threshold_fine_tuning

__all__ = [
    "DEFAULT_METRICS",
    "METRICS",
    "MetricInputs",
    "MetricOutput",
    "MetricSpec",
    "metrics_for",
]


class MetricInputs(NamedTuple):
    r"""
    What a metric gets for one batch of one method.

    Attributes:
        model (nn.Module): the model.
        images (Tensor): ``N x C x H x W`` inputs.
        maps (Tensor): the method's ``N x 1 x h x w`` maps.
        target (Tensor): ``(N,)`` the explained class.
        masks (Tensor or None): ``N x 1 x H x W`` bool ground truth, if any.
        max_examples_per_batch (int or None): most inputs per forward pass; None:
                    as many as the pass budget allows
                    (:func:`~captum_cams.get_pass_budget`).
        extras (dict[str, Tensor]): the batch's further ground truth by name
                    (:attr:`DataBatch.extras` and :meth:`BenchmarkData.ground_truth`),
                    e.g. ``extras["region_masks"]``; holds at least the metric's
                    :attr:`MetricSpec.needs`.
        requested (tuple[str, ...]): every metric computed on these maps, so that
                    one metric can take its values from a pass another needs anyway
                    (AD, IC, API and DR from the threshold sweep's ``t = 0``).
        shared (dict, optional): results of passes shared by the metrics of these
                    maps (the runner gives one empty dict per method and batch);
                    None: nothing is shared.

    Examples::

        >>> inputs = MetricInputs(model, images, maps, target, None, max_examples_per_batch=None)
        >>> METRICS["average_drop"].compute(inputs).values   # (N,) average drop per example
    """

    model: nn.Module
    images: Tensor
    maps: Tensor
    target: Tensor
    masks: Optional[Tensor]
    max_examples_per_batch: Optional[int]
    extras: Dict[str, Tensor] = {}
    requested: Tuple[str, ...] = ()
    shared: Optional[Dict[str, Any]] = None


class MetricOutput(NamedTuple):
    r"""
    A metric's result for one batch.

    Attributes:
        values (Tensor): ``(N,)`` one value per example.
        curves (dict[str, Tensor]): named ``N x T`` curves (may be empty).
        grid (Tensor or None): the curves' ``(T,)`` abscissae.

    Examples::

        >>> output = METRICS["api_apd_auc"].compute(inputs)
        >>> output.values.shape, sorted(output.curves), output.grid
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
        needs (tuple[str, ...], optional): names of :attr:`MetricInputs.extras` the
                    metric reads; it runs only on data whose
                    :attr:`BenchmarkData.provides` has them all. Default: none.
        description (str, optional): the title's abbreviation spelled out, what is
                    measured and in which unit, for the table's legend. Default: ``""``.
        group (str, optional): the printed table the column goes in (one table per
                    group, so that each fits a terminal). Default: ``"other metrics"``.
        in_default_set (bool, optional): run when no metric is named (the main
                    job's set, :data:`DEFAULT_METRICS`); the others run when named.
                    Default: True.

    Examples::

        >>> METRICS["drop"] = MetricSpec("AD %", lambda m: MetricOutput(average_drop(
        ...     m.model, m.images, m.maps, m.target)), higher_is_better=False, percent=True,
        ...     description="average drop: mean of max(y − o, 0) / y, in % of y")
    """

    title: str
    compute: Callable[[MetricInputs], MetricOutput]
    higher_is_better: bool = True
    percent: bool = False
    needs_boxes: bool = False
    needs: Tuple[str, ...] = ()
    description: str = ""
    group: str = "other metrics"
    in_default_set: bool = True

    def unmet(self, data: BenchmarkData) -> List[str]:
        r"""
        What this metric needs that ``data`` does not provide.

        Args:
            data (BenchmarkData): the benchmark's images.

        Returns:
            *list[str]*: ``"boxes"`` and the missing :attr:`needs`; empty when the
            metric can run.

        Examples::

            >>> METRICS["bbox"].unmet(FolderData(files, preprocess))
            ['boxes']
        """
        missing = ["boxes"] if self.needs_boxes and not data.has_boxes else []
        return missing + [name for name in self.needs if name not in data.provides]


def _shared(m: MetricInputs, name: str, compute: Callable[[], Any]) -> Any:
    r"""``compute()`` once per :attr:`MetricInputs.shared` (every call without it)."""
    if m.shared is None:
        return compute()
    if name not in m.shared:
        m.shared[name] = compute()
    return m.shared[name]


def _threshold_sweep(m: MetricInputs) -> Any:
    return _shared(
        m,
        "threshold_sweep",
        lambda: threshold_sweep(
            m.model,
            m.images,
            m.maps,
            target=m.target,
            max_examples_per_batch=m.max_examples_per_batch,
        ),  # fmt: skip
    )


# The sweep's first threshold, t = 0, masks with the soft map I itself: the masked copy
# of average drop, increase in confidence, API and drop rate.
assert DEFAULT_SWEEP_THRESHOLDS[0] == 0.0


def _soft_mask_values(m: MetricInputs) -> Dict[str, Tensor]:
    r"""AD, IC, API and DR of the soft mask ``I``: one masked pass for the four, the
    threshold sweep's ``t = 0`` column when the sweep is computed anyway."""

    def compute() -> Dict[str, Tensor]:
        if "api_apd_auc" in m.requested:
            sweep = _threshold_sweep(m)
            return {
                "average_drop": sweep.apd[:, 0],
                "increase_in_confidence": sweep.ir[:, 0],
                "api": sweep.api[:, 0],
                "drop_rate": sweep.dr[:, 0],
            }
        scores = confidence_scores(
            m.model, m.images, m.maps, target=m.target,
            max_examples_per_batch=m.max_examples_per_batch,
        )  # fmt: skip
        return {
            "average_drop": scores.average_drop,
            "increase_in_confidence": scores.increase_in_confidence,
            "api": scores.average_probability_increase,
            "drop_rate": scores.drop_rate,
        }

    return _shared(m, "soft_mask_values", compute)


def _confidence(name: str) -> Callable[[MetricInputs], MetricOutput]:
    return lambda m: MetricOutput(_soft_mask_values(m)[name])


def _curve(function: Callable[..., Tensor]) -> Callable[[MetricInputs], MetricOutput]:
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
    sweep = _threshold_sweep(m)
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


def _road(order: str) -> Callable[[MetricInputs], MetricOutput]:
    def compute(m: MetricInputs) -> MetricOutput:
        result = road(
            m.model, m.images, m.maps, target=m.target,
            max_examples_per_batch=m.max_examples_per_batch, order=order, return_curves=True,
        )  # fmt: skip
        return MetricOutput(result.scores, {"score": result.curves}, result.percentages)

    return compute


def _regions(function: Callable[..., Tensor]) -> Callable[[MetricInputs], MetricOutput]:
    def compute(m: MetricInputs) -> MetricOutput:
        return MetricOutput(function(m.maps, m.extras["region_masks"], m.extras["reliance"]))

    return compute


#: What the model-grounded metrics need from the data.
_REGIONS = ("region_masks", "reliance")

#: The printed tables the metrics are grouped in.
_CONFIDENCE = (
    "Confidence: y is the model's probability of the class on the image, o on the image "
    "multiplied by the map"
)
_CURVES = "Curves: the class probability as pixels are inserted or deleted, or the map thresholded"
_LOCALISATION = "Localisation: the map against the ground-truth box of the object"
_GROUNDED = "Model-grounded: the map against the model's measured reliance on each region"

#: The metrics of the benchmark, by command-line name.
METRICS: Dict[str, MetricSpec] = {
    "average_drop": MetricSpec(
        "AD %", _confidence("average_drop"), False, True,
        description="AD, average drop: mean of max(y − o, 0) / y, in % of y",
        group=_CONFIDENCE,
    ),
    "increase_in_confidence": MetricSpec(
        "IC %", _confidence("increase_in_confidence"), True, True,
        description="IC, increase in confidence: % of the images with o > y",
        group=_CONFIDENCE,
    ),
    "api": MetricSpec(
        "API %", _confidence("api"), True, True,
        description="API, average probability increase: mean of max(o − y, 0) / y, in % of y",
        group=_CONFIDENCE,
    ),
    "drop_rate": MetricSpec(
        "DR %", _confidence("drop_rate"), False, True,
        description="DR, drop rate: % of the images with o < y",
        group=_CONFIDENCE,
    ),
    "insertion_auc": MetricSpec(
        "Ins AUC", _curve(insertion_auc), True,
        description="Ins AUC, insertion: area under y as the map's highest pixels are put "
        "into a blurred image, in steps of 2.5 % (probability × fraction of pixels, 0–1)",
        group=_CURVES,
    ),
    "deletion_auc": MetricSpec(
        "Del AUC", _curve(deletion_auc), False,
        description="Del AUC, deletion: the same as they are set to 0 in the image (0–1)",
        group=_CURVES,
    ),
    "api_apd_auc": MetricSpec(
        "API/APD AUC", _sweep, True,
        description="API/APD AUC: area under API against APD (average probability drop) of "
        "the map kept where ≥ t, t = 0, 0.1, …, 1; API scaled to [0, 1] per curve (0–1)",
        group=_CURVES,
    ),
    "tft_rpi": MetricSpec(
        "best RPI", _tft_rpi, True,
        description="best RPI: TFT's highest relative probability increase max(o − y, 0) / y "
        "over the image kept where the map ≥ τ, τ = 0.1, …, 1 (a fraction of y)",
        group=_CURVES,
    ),
    "energy_pg": MetricSpec(
        "Energy PG %", _localization(energy_pointing_game), True, True, needs_boxes=True,
        description="Energy PG, energy-based pointing game: % of the map's mass inside the box",
        group=_LOCALISATION,
    ),
    "bbox": MetricSpec(
        "Bbox %", _localization(bbox_score), True, True, needs_boxes=True,
        description="Bbox: % of the map's N highest pixels inside the box of N pixels",
        group=_LOCALISATION,
    ),
    "pointing_game": MetricSpec(
        "PG %", _pointing, True, True, needs_boxes=True,
        description="PG, pointing game: % of the images whose map maximum is in the box "
        "(within 15 pixels at 224 × 224, scaled to the image)",
        group=_LOCALISATION,
    ),
    "reliance_rank": MetricSpec(
        "Reliance rank ρ", _regions(reliance_rank_correlation), True, needs=_REGIONS,
        description="Reliance rank ρ: Spearman correlation of the map's density on each region "
        "with the model's measured reliance on it (−1 to 1)",
        group=_GROUNDED,
    ),
    "ignored_mass": MetricSpec(
        "Ignored mass %", _regions(ignored_region_mass), False, True, needs=_REGIONS,
        description="Ignored mass: % of the map's mass on regions the model does not rely on",
        group=_GROUNDED,
    ),
    # a sparse solve per imputed image: outside the main job's default set (its time)
    "road_morf": MetricSpec(
        "ROAD MoRF", _road("morf"), False, in_default_set=False,
        description="ROAD MoRF, remove and debias, most relevant first: mean y as the map's "
        "highest 10, 20, …, 90 % pixels are removed and filled by noisy linear imputation (0–1)",
        group=_CURVES,
    ),
    "road_lerf": MetricSpec(
        "ROAD LeRF", _road("lerf"), True, in_default_set=False,
        description="ROAD LeRF: the same with the map's lowest pixels removed first (0–1)",
        group=_CURVES,
    ),
}  # fmt: skip

#: The metrics run when none is named (those the data allows): the main job's set.
DEFAULT_METRICS: List[str] = [name for name, spec in METRICS.items() if spec.in_default_set]


def metrics_for(data: BenchmarkData, names: Optional[Sequence[str]] = None) -> List[str]:
    r"""
    The metrics to compute on ``data``.

    Args:
        data (BenchmarkData): the benchmark's images.
        names (sequence of str, optional): the metrics asked for; every one must
                    exist and have what it needs (else an :class:`InputError`). None:
                    every metric of :data:`DEFAULT_METRICS` the data allows, the others
                    skipped. Default: None.

    Returns:
        *list[str]*: metric names, in order.

    Examples::

        >>> metrics_for(FolderData(files, preprocess))  # no boxes: no Bbox
        ['average_drop', ...]
    """
    if names is None:
        return [
            name for name, spec in METRICS.items() if spec.in_default_set and not spec.unmet(data)
        ]
    for name in names:
        if name not in METRICS:
            raise InputError(f"--metrics: unknown {name}; choose from {', '.join(METRICS)}")
        unmet = METRICS[name].unmet(data)
        if unmet == ["boxes"]:
            raise InputError(f"--metrics: {name} needs boxes; give --annotations")
        if unmet:
            provided = ", ".join(data.provides) or "none"
            raise InputError(
                f"--metrics: {name} needs {', '.join(unmet)}, which this data does not "
                f"provide (it provides: {provided})"
            )
    return list(names)
