#!/usr/bin/env python3
r"""Model-grounded truth: what the model itself relies on, measured by intervention.

Human boxes say where the object is, not what the model uses. Where the images come
from a renderer that can leave a region out (as
:class:`~captum_cams.kit.datasets.ClutteredShapes` can), the model's *reliance* on region
``r`` of image ``x`` is measured directly:

.. math::

    \rho_r = s_c(x) - s_c(x_{\setminus r}),

the drop of the target score (softmax probability by default) when the region is
removed (:func:`intervention_reliance`). Two scores then compare a map with it:

- :func:`reliance_rank_correlation`: the Spearman correlation, per image, between the
  regions' map density (mean of ``mm(up(I))`` over the region's pixels) and their
  measured reliance; 1 when the map orders the regions as the model relies on them.
- :func:`ignored_region_mass`: the share of the map's mass on the regions the model
  provably ignores (``|ρ_r| ≤ tolerance``), e.g. distractors; 0 is best.

Reliances within ``tolerance`` of 0 count as exactly 0 in both, so the order among
ignored regions (measurement noise) is never scored.
"""

import math
from typing import Any, Callable, Optional

import torch
from captum._utils.typing import TargetType
from captum.log import log_usage
from torch import Tensor

from captum_cams._utils.batching import progress_bar
from captum_cams._utils.guards import check_image_batch, preserved_model_state
from captum_cams._utils.masking import prepare_maps
from captum_cams._utils.metric_scoring import check_metric_args, joint_logits, original_scores
from captum_cams.metrics.sanity import spearman_correlation

#: Reliances with ``|ρ| ≤`` this (a probability) count as "the model ignores the region":
#: 5 points of probability, against the 0.69-0.71 a class part measures on average on
#: the embedded model (and about 0.01-0.03 of measurement jitter on its distractors).
DEFAULT_RELIANCE_TOLERANCE: float = 0.05

_DENSITY_RESOLUTION = 1e9


@log_usage(part_of_slo=True)
def intervention_reliance(
    forward_func: Callable,
    inputs: Tensor,
    intervened: Tensor,
    target: TargetType = None,
    additional_forward_args: Any = None,
    max_examples_per_batch: Optional[int] = None,
    score: str = "probability",
    show_progress: bool = False,
) -> Tensor:
    r"""
    The model's reliance on each region: the drop of the target score when the
    region is removed from the image, ``ρ_r = s_c(x) − s_c(x without r)``.

    Args:
        forward_func (Callable): the model, returning ``N x num_classes`` logits.
        inputs (Tensor): ``N x C x H x W`` images.
        intervened (Tensor): ``N x R x C x H x W``: image ``n`` rendered with
                    region ``r`` left out (e.g.
                    :meth:`~captum_cams.kit.datasets.ClutteredShapes.interventions`).
        target (int, list[int], Tensor, optional): class per example, as Captum
                    takes it. None: each example's predicted class. Default: None
        additional_forward_args (Any, optional): further arguments of
                    ``forward_func``. Default: None
        max_examples_per_batch (int, optional): most inputs per forward pass.
                    None: as many as the pass budget allows
                    (:func:`~captum_cams.get_pass_budget`). Default: None
        score (str, optional): ``"probability"`` (softmax) or ``"logit"``.
                    Default: ``"probability"``
        show_progress (bool, optional): a progress bar over the forward passes.
                    Default: False

    Returns:
        *Tensor*: ``N x R`` reliances (positive: the model needs the region).

    Examples::

        >>> data = ClutteredShapes(8, split="test")
        >>> images = torch.stack([data[i][0] for i in range(8)])
        >>> intervened = torch.stack([data.interventions(i) for i in range(8)])
        >>> reliance = intervention_reliance(model, images, intervened)
    """
    check_image_batch(inputs)
    check_metric_args(max_examples_per_batch, score)
    if (
        not isinstance(intervened, Tensor)
        or intervened.dim() != 5
        or intervened.shape[0] != inputs.shape[0]
        or intervened.shape[2:] != inputs.shape[1:]
    ):
        shape = tuple(intervened.shape) if isinstance(intervened, Tensor) else type(intervened)
        raise ValueError(
            f"intervened must be N x R x C x H x W with N, C, H, W of inputs "
            f"{tuple(inputs.shape)}; got {shape}"
        )
    if not torch.isfinite(intervened).all():
        raise ValueError("intervened must be finite")
    num_regions = intervened.shape[1]
    bar = progress_bar(show_progress, "intervention_reliance")
    with bar, torch.no_grad(), preserved_model_state(forward_func):
        x = inputs.detach()
        if num_regions == 0:
            original_scores(
                forward_func, x, target, additional_forward_args, max_examples_per_batch, score
            )  # the target is still checked
            return x.new_zeros(x.shape[0], 0)
        copies = intervened.detach().to(dtype=x.dtype, device=x.device)
        # the images and their interventions in one chunked loop
        logits, idx = joint_logits(
            forward_func, x, target, additional_forward_args, max_examples_per_batch,
            num_regions, lambda examples, steps: copies[examples, steps],
        )  # fmt: skip
        scores = torch.softmax(logits, dim=2) if score == "probability" else logits
        scores = scores.gather(2, idx.view(-1, 1, 1).expand(-1, scores.shape[1], 1)).squeeze(2)
        y, removed = scores[:, :1], scores[:, 1:]
    return y - removed


def _check_regions(
    attributions: Tensor, region_masks: Tensor, reliance: Tensor, tolerance: float
) -> Tensor:
    if not isinstance(region_masks, Tensor) or region_masks.dim() != 4:
        got = tuple(region_masks.shape) if isinstance(region_masks, Tensor) else region_masks
        raise ValueError(f"region_masks must be an N x R x H x W tensor; got {got!r}")
    if not isinstance(reliance, Tensor) or tuple(reliance.shape) != tuple(region_masks.shape[:2]):
        raise ValueError(
            f"reliance must be N x R = {tuple(region_masks.shape[:2])} (one value per region); got "
            f"{tuple(reliance.shape) if isinstance(reliance, Tensor) else type(reliance)}"
        )
    if not torch.isfinite(reliance).all():
        raise ValueError("reliance must be finite")
    if (
        isinstance(tolerance, bool)
        or not isinstance(tolerance, (int, float))
        or not math.isfinite(tolerance)
        or tolerance < 0
    ):
        raise ValueError(f"tolerance must be a finite number >= 0; got {tolerance!r}")
    return prepare_maps(
        attributions,
        tuple(region_masks.shape[-2:]),
        region_masks.shape[0],
        dtype=torch.float64,
        device=region_masks.device,
    )


@log_usage(part_of_slo=True)
def reliance_rank_correlation(
    attributions: Tensor,
    region_masks: Tensor,
    reliance: Tensor,
    tolerance: float = DEFAULT_RELIANCE_TOLERANCE,
) -> Tensor:
    r"""
    How well a map ranks an image's regions by the model's measured reliance:
    the Spearman correlation (average ranks for ties) between each present
    region's map density — the mean of ``mm(up(I))`` over its pixels — and its
    reliance, with reliances within ``tolerance`` of 0 set to 0.

    The density, unlike the sum, is unchanged in order by the affine ``mm``, so a
    map whose value on each region is that region's reliance scores exactly 1.
    A map that is constant over the regions scores 0. Where the reliance does not
    rank the regions (fewer than two present regions, or all reliances equal
    after the tolerance) no map is right or wrong: the value is NaN, and
    averages must skip it (the benchmark does, and reports the count).

    Args:
        attributions (Tensor): ``N x 1 x h x w`` (or ``N x h x w``) maps of any
                    spatial size.
        region_masks (Tensor): ``N x R x H x W`` bool, each region's pixels; a
                    region with no pixel is absent and not ranked.
        reliance (Tensor): ``N x R`` measured reliances
                    (:func:`intervention_reliance`).
        tolerance (float, optional): ``|ρ| ≤ tolerance`` counts as 0.
                    Default: ``0.05``

    Returns:
        *Tensor*: ``(N,)`` correlations in ``[-1, 1]`` (float64; NaN where undefined,
        see above).

    Examples::

        >>> reliance_rank_correlation(maps, annotation_regions, reliance).nanmean()
    """
    maps = _check_regions(attributions, region_masks, reliance, tolerance)
    masks = region_masks.to(torch.bool)
    area = masks.sum(dim=(-2, -1))
    density = (maps * masks).sum(dim=(-2, -1)) / area.clamp_min(1)
    # Equal values summed over regions of other sizes differ in the last bits: densities
    # (in [0, 1]) within 1e-9 of each other are ties, as they would be in exact arithmetic.
    density = torch.round(density * _DENSITY_RESOLUTION) / _DENSITY_RESOLUTION
    truth = reliance.detach().to(device=masks.device, dtype=torch.float64)
    truth = torch.where(truth.abs() <= tolerance, torch.zeros_like(truth), truth)
    present = area > 0
    out = torch.full((masks.shape[0],), float("nan"), dtype=torch.float64, device=masks.device)
    for n in range(masks.shape[0]):
        rows = present[n]
        values = truth[n, rows]
        if values.numel() < 2 or bool((values == values[0]).all()):
            continue
        out[n] = spearman_correlation(density[n, rows].unsqueeze(0), values.unsqueeze(0))[0]
    return out


@log_usage(part_of_slo=True)
def ignored_region_mass(
    attributions: Tensor,
    region_masks: Tensor,
    reliance: Tensor,
    tolerance: float = DEFAULT_RELIANCE_TOLERANCE,
) -> Tensor:
    r"""
    The share of a map's mass on the regions the model provably ignores: present
    regions whose measured reliance is within ``tolerance`` of 0 (for example
    distractors, or a part that never decides the class). Lower is better.

    The map is ``mm(up(I))``; a map that is constant (all zeros after ``mm``)
    counts as spread evenly, so its share is the ignored regions' share of the
    image's area. An image without ignored regions scores 0.

    Args:
        attributions (Tensor): ``N x 1 x h x w`` (or ``N x h x w``) maps of any
                    spatial size.
        region_masks (Tensor): ``N x R x H x W`` bool, each region's pixels.
        reliance (Tensor): ``N x R`` measured reliances
                    (:func:`intervention_reliance`).
        tolerance (float, optional): ``|ρ| ≤ tolerance`` counts as ignored.
                    Default: ``0.05``

    Returns:
        *Tensor*: ``(N,)`` shares in ``[0, 1]`` (float64).

    Examples::

        >>> ignored_region_mass(maps, annotation_regions, reliance).mean()
    """
    maps = _check_regions(attributions, region_masks, reliance, tolerance)
    masks = region_masks.to(torch.bool)
    ignored = reliance.detach().to(masks.device).abs() <= tolerance
    union = (masks & ignored[:, :, None, None]).any(dim=1, keepdim=True)
    total = maps.sum(dim=(1, 2, 3))
    flat = total <= 0
    maps = torch.where(flat[:, None, None, None], torch.ones_like(maps), maps)
    return (maps * union).sum(dim=(1, 2, 3)) / maps.sum(dim=(1, 2, 3))
