#!/usr/bin/env python3
r"""Insertion and deletion AUC (Petsiuk et al., RISE, https://arxiv.org/abs/1806.07421),
as used in LIFT-CAM's Table 4.

Pixels are ranked by ``mm(up(I))`` (highest first, ties by row-major index). At the
fractions ``0, step, 2·step, …, 1`` the ``k = round(fraction·H·W)`` highest pixels are
removed from the input (deletion: replaced by the baseline) or added to the baseline
(insertion: copied from the input), in all channels at once. The curve of target
scores is integrated with the trapezoid rule against the actual fractions ``k/(H·W)``
on ``[0, 1]``.
"""

import math
from typing import Any, Callable, NamedTuple, Optional, Union

import torch
from captum._utils.typing import TargetType
from captum.log import log_usage
from torch import Tensor

from captum_cams._utils.baselines import BaselineLike, parse_baselines
from captum_cams._utils.batching import progress_bar, select_rows
from captum_cams._utils.guards import check_image_batch, preserved_model_state
from captum_cams._utils.masking import make_baseline, masked_rows, prepare_maps
from captum_cams._utils.metric_scoring import check_metric_args, joint_logits, perturbed_scores
from captum_cams._utils.thresholding import (
    check_fraction,
    count_of_fraction,
    pixel_ranks,
    top_k_mask,
)


class InsertionDeletionResult(NamedTuple):
    r"""
    Result of :func:`insertion_auc` / :func:`deletion_auc` with ``return_curves=True``.

    Attributes:
        auc (Tensor): ``(N,)`` trapezoid areas.
        curves (Tensor): ``N x S`` target scores at each fraction.
        fractions (Tensor): ``(S,)`` the fractions ``k/(H·W)`` actually perturbed.

    Examples::

        >>> result = deletion_auc(net, x, maps, target=3, return_curves=True)
        >>> result.auc, result.curves.shape, result.fractions
    """

    auc: Tensor
    curves: Tensor
    fractions: Tensor


def _curve_counts(step: float, num_pixels: int) -> Tensor:
    num_points = int(math.ceil(1.0 / step - 1e-9)) + 1
    counts = [count_of_fraction(min(i * step, 1.0), num_pixels) for i in range(num_points)]
    counts[-1] = num_pixels
    return torch.tensor(counts, dtype=torch.long)


def _curve(
    forward_func: Callable,
    inputs: Tensor,
    attributions: Tensor,
    target: TargetType,
    additional_forward_args: Any,
    max_examples_per_batch: Optional[int],
    step: float,
    baselines: BaselineLike,
    score: str,
    insertion: bool,
    return_curves: bool,
    show_progress: bool,
) -> Union[Tensor, InsertionDeletionResult]:
    check_image_batch(inputs)
    check_metric_args(max_examples_per_batch, score)
    step = check_fraction(step, "step")
    bar = progress_bar(show_progress, "insertion_auc" if insertion else "deletion_auc")
    with bar, torch.no_grad(), preserved_model_state(forward_func):
        x = inputs.detach()
        size = tuple(x.shape[-2:])
        maps = prepare_maps(attributions, size, x.shape[0], dtype=x.dtype, device=x.device)
        ranks = pixel_ranks(maps)
        num_pixels = size[0] * size[1]
        counts = _curve_counts(step, num_pixels).to(x.device)
        num_points = counts.shape[0]
        base = make_baseline(x, baselines)
        # The point where every pixel is the input's (deletion's first, insertion's
        # last) is x itself, evaluated with the perturbed copies in one loop
        # (joint_logits); the point where every pixel is the baseline's is one image
        # for all examples when the baseline is a constant and no per-example
        # argument follows the rows: it is evaluated once.
        unchanged = num_points - 1 if insertion else 0
        all_baseline = 0 if insertion else num_points - 1
        shared_baseline = additional_forward_args is None and _constant_baseline(baselines)
        points = [
            p
            for p in range(num_points)
            if p != unchanged and not (shared_baseline and p == all_baseline)
        ]
        point_index = torch.tensor(points or [unchanged], device=x.device)

        def build(examples: Tensor, steps: Tensor) -> Tensor:
            point = point_index[steps]
            top = top_k_mask(select_rows(ranks, examples), counts[point], size, x.dtype)
            keep = top if insertion else 1 - top
            return masked_rows(x, examples, keep, base)

        logits, idx = joint_logits(
            forward_func, x, target, additional_forward_args, max_examples_per_batch,
            len(points), build,
        )  # fmt: skip
        if score == "probability":  # the softmax of every row over its classes
            logits = torch.softmax(logits, dim=2)
        columns = idx.view(-1, 1, 1).expand(-1, logits.shape[1], 1)
        evaluated = logits.gather(2, columns).squeeze(2)
        curves = evaluated.new_empty((x.shape[0], num_points))
        curves[:, unchanged] = evaluated[:, 0]
        if points:
            curves[:, point_index] = evaluated[:, 1 : 1 + len(points)]
        if shared_baseline:
            only = base[:1]
            outputs = perturbed_scores(
                forward_func, only, 1, lambda _examples, _steps: only, idx[:1], None,
                max_examples_per_batch, score, return_all=True,
            )  # fmt: skip
            curves[:, all_baseline] = outputs[0, 0, idx]
        fractions = counts.to(x.dtype) / num_pixels
        auc = torch.trapezoid(curves, fractions, dim=1)
    if return_curves:
        return InsertionDeletionResult(auc=auc, curves=curves, fractions=fractions)
    return auc


def _constant_baseline(baselines: BaselineLike) -> bool:
    r"""Whether ``baselines`` makes the same image for every example (zeros or a
    constant)."""
    parsed = parse_baselines(baselines)
    return (
        parsed is None
        or isinstance(parsed, float)
        or (isinstance(parsed, str) and parsed == "zero")
    )


@log_usage(part_of_slo=True)
def deletion_auc(
    forward_func: Callable,
    inputs: Tensor,
    attributions: Tensor,
    target: TargetType = None,
    additional_forward_args: Any = None,
    max_examples_per_batch: Optional[int] = None,
    step: float = 0.025,
    baselines: BaselineLike = "zero",
    score: str = "probability",
    return_curves: bool = False,
    show_progress: bool = False,
) -> Union[Tensor, InsertionDeletionResult]:
    r"""
    Deletion AUC (RISE): remove the highest-ranked pixels, step by step, and
    integrate the falling target score. Lower is better.

    The curve starts at the input's score (nothing removed) and ends at the
    baseline's score (everything removed). The default baseline is zeros, as in RISE.
    The first point is the input itself and the last, with a constant baseline, one
    image for all examples: both are evaluated once, not once per step and example.

    Args:
        forward_func (Callable): The model, returning ``N x num_classes`` logits.
        inputs (Tensor): ``N x C x H x W`` images; left unchanged, no gradients built.
        attributions (Tensor): maps ``N x (1 x) h x w`` of any spatial size,
                    upsampled to ``H x W`` and min-max normalised before ranking.
        target (int, list[int], Tensor, optional): class per example. None: the
                    predicted class. Default: None
        additional_forward_args (Any, optional): further model arguments; tensors
                    whose first dimension is ``N`` follow their example. Default: None
        max_examples_per_batch (int, optional): most perturbed inputs per forward
                    pass. Default: None (as many as the pass budget allows,
                    :func:`~captum_cams.get_pass_budget`)
        step (float, optional): fraction of pixels per step. Default: 0.025 (41 points)
        baselines (str, float or Tensor, optional): ``"zero"``, ``"blur"``, a
                    constant or a tensor broadcastable to ``inputs``. Default: ``"zero"``
        score (str, optional): ``"probability"`` or ``"logit"``.
                    Default: ``"probability"``
        return_curves (bool, optional): also return the curves and fractions.
                    Default: False
        show_progress (bool, optional): a progress bar over the forward passes.
                    Default: False

    Returns:
        *Tensor* of shape ``(N,)``: the AUC per example; with ``return_curves``,
        an :class:`InsertionDeletionResult` ``(auc, curves, fractions)``.

    Examples::

        >>> maps = LayerGradCam(net, net.conv4).attribute(x, target=3)
        >>> deletion_auc(net, x, maps, target=3)
        >>> result = deletion_auc(net, x, maps, target=3, return_curves=True)
        >>> plt.plot(result.fractions, result.curves[0])
    """
    return _curve(
        forward_func, inputs, attributions, target, additional_forward_args,
        max_examples_per_batch, step, baselines, score, False, return_curves, show_progress,
    )  # fmt: skip


@log_usage(part_of_slo=True)
def insertion_auc(
    forward_func: Callable,
    inputs: Tensor,
    attributions: Tensor,
    target: TargetType = None,
    additional_forward_args: Any = None,
    max_examples_per_batch: Optional[int] = None,
    step: float = 0.025,
    baselines: BaselineLike = "blur",
    score: str = "probability",
    return_curves: bool = False,
    show_progress: bool = False,
) -> Union[Tensor, InsertionDeletionResult]:
    r"""
    Insertion AUC (RISE): starting from the baseline, insert the highest-ranked
    pixels of the input step by step and integrate the rising target score. Higher
    is better.

    The curve starts at the baseline's score and ends at the input's score. The
    default baseline is a Gaussian blur of the input (11 pixels, sigma 5), as in RISE.
    The last point is the input itself, whose score the unmasked pass gives.

    Args:
        forward_func (Callable): The model, returning ``N x num_classes`` logits.
        inputs (Tensor): ``N x C x H x W`` images; left unchanged, no gradients built.
        attributions (Tensor): maps ``N x (1 x) h x w`` of any spatial size,
                    upsampled to ``H x W`` and min-max normalised before ranking.
        target (int, list[int], Tensor, optional): class per example. None: the
                    predicted class. Default: None
        additional_forward_args (Any, optional): further model arguments; tensors
                    whose first dimension is ``N`` follow their example. Default: None
        max_examples_per_batch (int, optional): most perturbed inputs per forward
                    pass. Default: None (as many as the pass budget allows,
                    :func:`~captum_cams.get_pass_budget`)
        step (float, optional): fraction of pixels per step. Default: 0.025 (41 points)
        baselines (str, float or Tensor, optional): ``"zero"``, ``"blur"``, a
                    constant or a tensor broadcastable to ``inputs``. Default: ``"blur"``
        score (str, optional): ``"probability"`` or ``"logit"``.
                    Default: ``"probability"``
        return_curves (bool, optional): also return the curves and fractions.
                    Default: False
        show_progress (bool, optional): a progress bar over the forward passes.
                    Default: False

    Returns:
        *Tensor* of shape ``(N,)``: the AUC per example; with ``return_curves``,
        an :class:`InsertionDeletionResult` ``(auc, curves, fractions)``.

    Examples::

        >>> maps = LayerGradCam(net, net.conv4).attribute(x, target=3)
        >>> insertion_auc(net, x, maps, target=3, baselines="zero")
    """
    return _curve(
        forward_func, inputs, attributions, target, additional_forward_args,
        max_examples_per_batch, step, baselines, score, True, return_curves, show_progress,
    )  # fmt: skip
