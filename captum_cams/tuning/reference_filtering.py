#!/usr/bin/env python3
r"""Libra-CAM's reference filtering, usable on any set of candidate maps.

For one example with candidate maps ``I_1 … I_R`` (in ``[0, 1]``, at input
resolution): ``S_r = f_c(I_r ⊙ x)`` (the target score of the input masked softly by
``I_r``), ``γ = mean(S) + std(S)`` (population standard deviation), keep the maps
with ``S_r ≥ γ`` — all of them when none is kept — and return their mean. Libra-CAM
applies it to its base maps, one per reference activation; the same function
averages the best of any candidate maps (several methods, several layers, …).

``rule="authors"`` is the filter of the authors' released code instead (Libra-CAM's
``variant="authors"``): with the increases ``d_r = S_r − f_c(x)`` and ``P`` the
positive ones, keep the maps with ``d_r ≥ mean(P) − std(P)`` (population standard
deviation); all of them when no ``d_r`` is positive.

All masked inputs go through the model with the package's one chunked loop
(:func:`captum_cams._utils.batching.evaluate_in_chunks`), masks built with
:mod:`captum_cams._utils.masking`.

Paper: Lee & Han, "Libra-CAM: An Activation-Based Attribution Based on the Linear
Approximation of Deep Neural Nets and Threshold Calibration", IJCAI 2022.
https://www.ijcai.org/proceedings/2022/0442
"""

from typing import Any, Callable, NamedTuple, Optional

import torch
from captum._utils.common import _format_additional_forward_args
from captum._utils.typing import TargetType
from captum.log import log_usage
from torch import Tensor

from captum_cams._utils.baselines import BaselineLike
from captum_cams._utils.batching import evaluate_in_chunks, progress_bar
from captum_cams._utils.guards import (
    check_additional_forward_args,
    check_choice,
    check_image_batch,
    format_target,
    preserved_model_state,
)
from captum_cams._utils.maps import minmax_normalize, upsample
from captum_cams._utils.masking import masked_rows, sweep_baseline
from captum_cams._utils.metric_scoring import (
    check_metric_args,
    check_target_range,
    forward_scores,
    original_scores,
)


class FilteringResult(NamedTuple):
    r"""
    Result of :func:`reference_filtering`.

    Attributes:
        filtered_maps (Tensor): ``N x 1 x H x W`` mean of the kept maps per example.
        kept (Tensor): ``N x R`` bool, which candidates were kept.
        scores (Tensor): ``N x R`` the scores ``S_r``.
        thresholds (Tensor): ``(N,)`` the ``γ = mean(S) + std(S)`` per example
                    (``rule="authors"``: ``mean(P) − std(P)`` of the positive
                    increases, NaN where none is positive).

    Examples::

        >>> result = reference_filtering(net, x, candidate_maps, target=3)
        >>> result.kept.sum(1), result.thresholds   # kept candidates and gamma per example
    """

    filtered_maps: Tensor
    kept: Tensor
    scores: Tensor
    thresholds: Tensor


#: The values ``rule`` accepts: the paper's filter or the authors' code's.
FILTER_RULES = ("paper", "authors")


def check_rule(rule: str) -> None:
    r"""
    Checks a filtering rule's name.

    Args:
        rule (str): ``"paper"`` or ``"authors"``.

    Raises:
        ValueError: any other value, naming ``rule``.

    Examples::

        >>> check_rule("authors")
    """
    check_choice(rule, FILTER_RULES, "rule")


def filter_rows(
    forward_func: Callable,
    inputs: Tensor,
    maps: Tensor,
    row_example: Tensor,
    target_idx: Tensor,
    additional_forward_args: Any,
    max_examples_per_batch: Optional[int],
    score: str,
    baselines: BaselineLike = None,
    rule: str = "paper",
    original: Optional[Tensor] = None,
    check_target: bool = False,
) -> FilteringResult:
    r"""
    Filtering of candidate maps given as rows (any number per example).

    Args:
        forward_func (Callable): the model.
        inputs (Tensor): ``N x C x H x W`` images, detached.
        maps (Tensor): ``M x 1 x H x W`` candidate maps, used as they are (no
                    normalisation).
        row_example (Tensor): ``(M,)`` the example of every row; every example has
                    at least one row, rows of an example in any order.
        target_idx (Tensor): ``(N,)`` the class per example.
        additional_forward_args (Any): the model's further arguments.
        max_examples_per_batch (int, optional): masked inputs per forward pass;
                    None: as many as the pass budget allows.
        score (str): ``"probability"`` or ``"logit"``.
        baselines (str, float or Tensor, optional): what removed pixels become.
        rule (str, optional): ``"paper"`` (keep ``S_r ≥ mean(S) + std(S)``) or
                    ``"authors"`` (keep ``d_r ≥ mean(P) − std(P)``, see the module).
                    Default: ``"paper"``
        original (Tensor, optional): ``(N,)`` the scores ``f_c(x)`` of the
                    unmasked inputs; required with ``rule="authors"``.
        check_target (bool, optional): check ``target_idx`` against the classes of
                    the first outputs (once), for a caller that made no unmasked
                    pass. Default: False

    Returns:
        *FilteringResult*: with ``kept`` and ``scores`` of shape ``(M,)`` (rows).

    Examples::

        >>> result = filter_rows(net, x, maps, row_example, target, None, 64, "probability")
    """
    check_rule(rule)
    if rule == "authors" and original is None:
        raise ValueError("rule='authors' needs the original scores f_c(x) (original=...)")
    num = inputs.shape[0]
    afa = _format_additional_forward_args(additional_forward_args)
    check_additional_forward_args(afa, num)
    with torch.no_grad(), preserved_model_state(forward_func):
        base = sweep_baseline(inputs, baselines)
        row_example = row_example.to(inputs.device)
        target_idx = target_idx.to(inputs.device)

        unchecked = [check_target]

        def row_scores(rows: Tensor) -> Tensor:
            examples = row_example[rows]
            keep = maps.index_select(0, rows)  # no host round trip to slice the rows
            masked = masked_rows(inputs, examples, keep, base)
            scores = forward_scores(forward_func, masked, examples, num, afa, score)
            if unchecked[0]:
                check_target_range(target_idx, scores.shape[1])
                unchecked[0] = False
            return scores.gather(1, target_idx[examples].unsqueeze(1)).squeeze(1)

        scores = evaluate_in_chunks(
            row_scores,
            row_example.shape[0],
            max_examples_per_batch,
            inputs.device,
            row=inputs[0],
            model=forward_func,
        )
        kept = torch.zeros_like(row_example, dtype=torch.bool)
        gammas = scores.new_empty(num)
        filtered = maps.new_empty((num, *maps.shape[1:]))
        for example in range(num):
            rows = (row_example == example).nonzero().squeeze(1)
            if rows.numel() == 0:
                raise ValueError(f"example {example} has no candidate map")
            values = scores[rows]
            if rule == "paper":
                gamma = values.mean() + values.std(correction=0)
                keep = values >= gamma
            else:
                assert original is not None
                values = values - original[example]
                positive = values[values > 0]
                if positive.numel() == 0:  # no increase: keep all, γ undefined
                    gamma = values.new_tensor(float("nan"))
                else:
                    gamma = positive.mean() - positive.std(correction=0)
                keep = values >= gamma
            if not bool(keep.any()):
                keep = torch.ones_like(keep)
            kept[rows] = keep
            gammas[example] = gamma
            filtered[example] = maps[rows[keep]].mean(dim=0)
    return FilteringResult(filtered_maps=filtered, kept=kept, scores=scores, thresholds=gammas)


@log_usage(part_of_slo=True)
def reference_filtering(
    forward_func: Callable,
    inputs: Tensor,
    attributions: Tensor,
    target: TargetType = None,
    additional_forward_args: Any = None,
    max_examples_per_batch: Optional[int] = None,
    score: str = "probability",
    baselines: BaselineLike = None,
    rule: str = "paper",
    show_progress: bool = False,
) -> FilteringResult:
    r"""
    Libra-CAM's reference filtering of ``R`` candidate maps per example.

    Every candidate is brought to ``[0, 1]`` at input resolution on its own,
    ``I_r = mm(up(attributions[:, r]))``; then ``S_r = f_c(I_r ⊙ x)``,
    ``γ = mean_r(S) + std_r(S)`` (population standard deviation), kept are the
    ``I_r`` with ``S_r ≥ γ`` (all when none), and the result is their mean. All
    ``N x R`` masked inputs go through the model in chunks of
    ``max_examples_per_batch`` (by default as many as the pass budget allows,
    :func:`~captum_cams.get_pass_budget`), under ``torch.no_grad()``.

    Paper: Lee & Han, "Libra-CAM: An Activation-Based Attribution Based on the
    Linear Approximation of Deep Neural Nets and Threshold Calibration", IJCAI 2022
    (Algorithm 1, reference filtering). https://www.ijcai.org/proceedings/2022/0442

    Args:
        forward_func (Callable): The model, returning ``N x num_classes`` logits.
        inputs (Tensor): ``N x C x H x W`` images; left unchanged.
        attributions (Tensor): ``N x R x h x w`` candidate maps of any spatial size
                    (e.g. the maps of ``R`` methods stacked along dimension 1),
                    without NaN or inf.
        target (int, list[int], Tensor, optional): class per example, as Captum
                    takes it. None: each example's predicted class. Default: None
        additional_forward_args (Any, optional): further arguments of
                    ``forward_func``. Default: None
        max_examples_per_batch (int, optional): most masked inputs per forward
                    pass. None: as many as the pass budget allows. Default: None
        score (str, optional): ``S_r`` as the softmax ``"probability"`` (the
                    paper) or the ``"logit"``. Default: ``"probability"``
        baselines (str, float or Tensor, optional): what removed pixels become.
                    Default: None (zeros, the paper's ``I_r ⊙ x``)
        rule (str, optional): ``"paper"`` or ``"authors"`` (keep the increases
                    ``d_r = S_r − f_c(x) ≥ mean(P) − std(P)`` of the positive ones
                    ``P``, the authors' code). Default: ``"paper"``
        show_progress (bool, optional): a progress bar over the forward passes.
                    Default: False

    Returns:
        *FilteringResult*: ``(filtered_maps, kept, scores, thresholds)``; the maps
        ``N x 1 x H x W`` at input resolution.

    Examples::

        >>> grad = LayerGradCam(net, net.conv4).attribute(x, target=3)
        >>> plus = LayerGradCamPlusPlus(net, net.conv4).attribute(x, target=3)
        >>> result = reference_filtering(net, x, torch.cat([grad, plus], dim=1), target=3)
        >>> result.kept          # N x 2: which method's map was kept
    """
    check_image_batch(inputs)
    check_metric_args(max_examples_per_batch, score)
    check_rule(rule)
    if not isinstance(attributions, Tensor) or attributions.dim() != 4:
        shape = tuple(attributions.shape) if isinstance(attributions, Tensor) else None
        raise ValueError(f"attributions must be an N x R x h x w tensor; got {shape}")
    x = inputs.detach()
    num, count = x.shape[0], attributions.shape[1]
    if attributions.shape[0] != num or count < 1:
        raise ValueError(
            f"attributions must hold R >= 1 maps for each of the {num} examples; got shape "
            f"{tuple(attributions.shape)}"
        )
    maps = attributions.detach().to(dtype=x.dtype, device=x.device)
    if not torch.isfinite(maps).all():
        raise ValueError("attributions contains NaN or inf")
    maps = maps.reshape(num * count, 1, *maps.shape[-2:])
    maps = minmax_normalize(upsample(maps, tuple(x.shape[-2:])))
    with progress_bar(show_progress, "reference_filtering"):
        y: Optional[Tensor] = None
        evaluated = target is None or rule == "authors"  # the rule needs f_c(x)
        if evaluated:
            with torch.no_grad(), preserved_model_state(forward_func):
                y, idx, _ = original_scores(
                    forward_func, x, target, additional_forward_args, max_examples_per_batch,
                    score,
                )  # fmt: skip
        else:  # the paper's rule reads only the masked scores
            idx = format_target(target, num, x.device)
        row_example = torch.arange(num, device=x.device).repeat_interleave(count)
        result = filter_rows(
            forward_func, x, maps, row_example, idx, additional_forward_args,
            max_examples_per_batch, score, baselines, rule, y, check_target=not evaluated,
        )  # fmt: skip
    return FilteringResult(
        filtered_maps=result.filtered_maps,
        kept=result.kept.reshape(num, count),
        scores=result.scores.reshape(num, count),
        thresholds=result.thresholds,
    )


__all__ = ["FilteringResult", "filter_rows", "reference_filtering"]
