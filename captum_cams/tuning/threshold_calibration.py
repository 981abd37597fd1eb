#!/usr/bin/env python3
r"""Libra-CAM's threshold calibration, usable on any method's maps.

For a map ``L = mm(up(attributions))`` in ``[0, 1]`` and every candidate ``t``:
``L_t = L ⊙ 1[L ≥ t]`` and ``C_t = f_c(L_t ⊙ x)``, the target score of the input
masked *softly* by ``L_t``. The calibrated map is ``L_t*`` with
``t* = argmax_t C_t`` (ties: the smallest ``t``, i.e. the largest mask).

This is the maths of threshold fine-tuning (TFT) with a soft mask and the raw score
instead of its relative increase, so the curves come from TFT's sweep
(:func:`~captum_cams.tuning.threshold_fine_tuning.sweep_scores`; for value
thresholds its scores equal :func:`captum_cams.metrics.threshold_sweep`'s ``scores``
with ``binary=False``), also for rank thresholds (``threshold_mode="rank"``, the
authors' code: ``t`` is the fraction of pixels kept). Only the ``N x T`` masked
inputs are evaluated: ``C_t`` needs no forward of the unmasked inputs (one is made
only to find the predicted class when ``target`` is None). Unlike TFT, the arg-max
is always taken, also when no threshold raises the score above the unmasked input's.

Paper: Lee & Han, "Libra-CAM: An Activation-Based Attribution Based on the Linear
Approximation of Deep Neural Nets and Threshold Calibration", IJCAI 2022.
https://www.ijcai.org/proceedings/2022/0442
"""

from typing import Any, Callable, NamedTuple, Optional, Sequence

import torch
from captum.log import log_usage
from torch import Tensor

from captum_cams._utils.guards import TargetLike, check_image_batch, preserved_model_state
from captum_cams.metrics._masking import BaselineLike, prepare_maps
from captum_cams.metrics._scoring import check_metric_args
from captum_cams.tuning.threshold_fine_tuning import (
    DEFAULT_TFT_THRESHOLDS,
    _check_threshold_mode,
    _check_thresholds,
    kept_maps,
    sweep_scores,
)

#: Libra-CAM's candidate thresholds: 0.1, 0.2, ..., 1.0 (the same ten values as TFT).
DEFAULT_CALIBRATION_THRESHOLDS = DEFAULT_TFT_THRESHOLDS


class CalibrationResult(NamedTuple):
    r"""
    Result of :func:`threshold_calibration`.

    Attributes:
        calibrated_maps (Tensor): ``N x 1 x H x W`` maps ``L_t*`` in ``[0, 1]`` at
                    input resolution (``L ⊙ top(t*)`` for rank thresholds).
        thresholds (Tensor): ``(N,)`` the chosen ``t*`` per example (a fraction
                    of pixels kept for rank thresholds).
        scores (Tensor): ``N x T`` the calibration scores ``C_t``, columns in the
                    order of ``grid``.
        grid (Tensor): ``(T,)`` the candidates, from the largest mask to the
                    smallest: ascending values, or descending fractions kept.
    """

    calibrated_maps: Tensor
    thresholds: Tensor
    scores: Tensor
    grid: Tensor


@log_usage()
def threshold_calibration(
    forward_func: Callable,
    inputs: Tensor,
    attributions: Tensor,
    target: TargetLike = None,
    additional_forward_args: Any = None,
    max_examples_per_batch: Optional[int] = None,
    thresholds: Sequence[float] = DEFAULT_CALIBRATION_THRESHOLDS,
    threshold_mode: str = "value",
    score: str = "probability",
    baselines: BaselineLike = None,
) -> CalibrationResult:
    r"""
    Libra-CAM's threshold calibration of any attribution map.

    ``L = mm(up(attributions))`` (bilinear to ``H x W``, ``align_corners=False``,
    then per-example min-max), ``L_t = L ⊙ 1[L ≥ t]``, ``C_t`` the target score of
    ``L_t ⊙ x`` (removed pixels become ``baselines``), and the result
    ``L_t*`` with ``t* = argmax_t C_t``; exactly equal scores go to the smallest
    ``t`` (the largest mask). With ``threshold_mode="rank"`` (the authors' code)
    ``t`` is the fraction of pixels kept: ``L_t = L ⊙ top(t)`` with ``top(t)`` the
    ``round(t·H·W)`` highest pixels (ties by row-major index); ties go to the
    largest fraction.

    All ``N x T`` masked inputs are evaluated in one chunked sweep (the one TFT
    uses), at most ``max_examples_per_batch`` per forward pass, under
    ``torch.no_grad()``.

    Paper: Lee & Han, "Libra-CAM: An Activation-Based Attribution Based on the
    Linear Approximation of Deep Neural Nets and Threshold Calibration", IJCAI 2022
    (Algorithm 1, threshold calibration). https://www.ijcai.org/proceedings/2022/0442

    Args:
        forward_func (Callable): The model, returning ``N x num_classes`` logits.
        inputs (Tensor): ``N x C x H x W`` images; left unchanged.
        attributions (Tensor): maps ``N x h x w`` or ``N x 1 x h x w`` of any
                    spatial size (a Grad-CAM at layer resolution, a Libra-CAM
                    map, ...), without NaN.
        target (int, list[int], Tensor, optional): class per example, as Captum
                    takes it. None: each example's predicted class. Default: None
        additional_forward_args (Any, optional): further arguments of
                    ``forward_func``; tensors whose first dimension is ``N`` follow
                    their example into the chunks. Default: None
        max_examples_per_batch (int, optional): most inputs per forward pass.
                    None: all ``N x T`` masked inputs at once. Default: None
        thresholds (sequence of float, optional): candidates ``t`` in ``(0, 1]``,
                    at least one. Default: ``(0.1, 0.2, ..., 1.0)``
        threshold_mode (str, optional): ``"value"`` (the paper) or ``"rank"``
                    (fraction of pixels kept, the authors' code).
                    Default: ``"value"``
        score (str, optional): ``C_t`` as the softmax ``"probability"`` (the
                    paper) or the ``"logit"``. Default: ``"probability"``
        baselines (str, float or Tensor, optional): what removed pixels become:
                    ``None``/``"zero"`` (the paper's ``L_t ⊙ x``), ``"blur"``, a
                    constant or a tensor broadcastable to ``inputs``. Default: None

    Returns:
        *CalibrationResult*: ``(calibrated_maps, thresholds, scores, grid)``.

    Examples::

        >>> net = ImageClassifier()
        >>> maps = LayerGradCam(net, net.conv4).attribute(x, target=3)
        >>> calibrated, t_star, scores, grid = threshold_calibration(net, x, maps, target=3)
        >>> calibrated.shape, scores.shape
        (torch.Size([2, 1, 32, 32]), torch.Size([2, 10]))
    """
    check_image_batch(inputs)
    check_metric_args(max_examples_per_batch, score)
    values = _check_thresholds(thresholds)
    _check_threshold_mode(threshold_mode)
    x = inputs.detach()
    with torch.no_grad(), preserved_model_state(forward_func):
        # one I for the sweep and the calibrated map; C_t needs no unmasked forward
        maps = prepare_maps(
            attributions, tuple(x.shape[-2:]), x.shape[0], dtype=x.dtype, device=x.device
        )
        scores, grid = sweep_scores(
            forward_func, x, maps, target, additional_forward_args, max_examples_per_batch,
            values, threshold_mode, False, baselines, score,
        )  # fmt: skip
        best = first_argmax(scores)
        calibrated = kept_maps(maps, values, grid, best, threshold_mode)
    return CalibrationResult(
        calibrated_maps=calibrated, thresholds=grid[best], scores=scores, grid=grid
    )


def first_argmax(values: Tensor) -> Tensor:
    r"""
    ``(N,)`` column of the maximum of every row of ``values`` (``N x T``); of
    exactly equal maxima the first column. A row of NaN is an error.
    """
    if torch.isnan(values).any():
        raise ValueError("the scores contain NaN: the model returned NaN on a masked input")
    best = values.max(dim=1, keepdim=True).values
    columns = torch.arange(values.shape[1], device=values.device).expand_as(values)
    return torch.where(values == best, columns, values.shape[1]).min(dim=1).values


__all__ = [
    "CalibrationResult",
    "DEFAULT_CALIBRATION_THRESHOLDS",
    "first_argmax",
    "threshold_calibration",
]
