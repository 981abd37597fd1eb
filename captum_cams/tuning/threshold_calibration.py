#!/usr/bin/env python3
r"""Libra-CAM's threshold calibration, usable on any method's maps.

For a map ``L`` and every candidate ``t``: ``L_t = L ⊙ 1[L ≥ t]`` and
``C_t = f_c(L_t ⊙ x)``, the target score of the input masked *softly* by ``L_t``.
The calibrated map is ``L_t*`` with ``t* = argmax_t C_t`` (ties: the smallest
``t``, i.e. the largest mask). Algorithm 1 of the paper thresholds Libra-CAM's
averaged map ``L`` exactly as it is (it lies in ``[0, 1]``, its maximum usually
below 1): ``normalize=False``, what :class:`~captum_cams.LayerLibraCam` does by
default. For any other method's maps, which are not in ``[0, 1]``, ``normalize=True``
(this function's default) first brings them there: ``L = mm(up(attributions))``;
on Libra-CAM's ``L`` that is a departure from the paper (an option of
:class:`~captum_cams.LayerLibraCam`, off by default).

This is the maths of threshold fine-tuning (TFT) with a soft mask and the raw score
instead of its relative increase: the masks and the first-argmax selection are
those of :mod:`captum_cams._utils.thresholding` and all ``N x T`` masked inputs go
through the sweep TFT uses (:func:`captum_cams._utils.metric_scoring.masked_scores`).
With ``threshold_mode="rank"`` ``t`` is the fraction of pixels kept. Unlike TFT, the
arg-max is always taken, also when no threshold raises the score above the unmasked
input's. ``C_t`` needs no forward of the unmasked inputs: with a given ``target``
only the ``N x T`` masked inputs are evaluated (one unmasked forward finds the
predicted class when ``target`` is None).

:func:`threshold_calibration_authors` is the calibration of the authors' released
code (pixel ranks, keep-fractions ``0, 0.1, …, 0.9`` scored by the clipped increase
of the probability, the map one decile past the best returned), exact, for
:class:`~captum_cams.LayerLibraCam`'s ``variant="authors"``.

Paper: Lee & Han, "Libra-CAM: An Activation-Based Attribution Based on the Linear
Approximation of Deep Neural Nets and Threshold Calibration", IJCAI 2022.
https://www.ijcai.org/proceedings/2022/0442
"""

import warnings
from typing import Any, Callable, NamedTuple, Optional, Sequence

import torch
from captum._utils.typing import TargetType
from captum.log import log_usage
from torch import Tensor

from captum_cams._utils.baselines import BaselineLike
from captum_cams._utils.batching import progress_bar
from captum_cams._utils.guards import check_image_batch
from captum_cams._utils.maps import as_maps, upsample
from captum_cams._utils.masking import prepare_maps
from captum_cams._utils.metric_scoring import check_metric_args, masked_scores
from captum_cams._utils.thresholding import (
    check_threshold_mode,
    check_thresholds,
    first_argmax,
    rank_keep,
    sweep_keep,
)
from captum_cams.tuning.threshold_fine_tuning import DEFAULT_TFT_THRESHOLDS

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

    Examples::

        >>> result = threshold_calibration(net, x, maps, target=3)
        >>> result.thresholds, result.scores.shape   # t* and C_t per example
    """

    calibrated_maps: Tensor
    thresholds: Tensor
    scores: Tensor
    grid: Tensor


@log_usage(part_of_slo=True)
def threshold_calibration(
    forward_func: Callable,
    inputs: Tensor,
    attributions: Tensor,
    target: TargetType = None,
    additional_forward_args: Any = None,
    max_examples_per_batch: Optional[int] = None,
    thresholds: Sequence[float] = DEFAULT_CALIBRATION_THRESHOLDS,
    threshold_mode: str = "value",
    score: str = "probability",
    baselines: BaselineLike = None,
    normalize: bool = True,
    allow_blank: bool = True,
    show_progress: bool = False,
) -> CalibrationResult:
    r"""
    Libra-CAM's threshold calibration of any attribution map.

    ``L = mm(up(attributions))`` (bilinear to ``H x W``, ``align_corners=False``,
    then per-example min-max; with ``normalize=False`` only ``up``),
    ``L_t = L ⊙ 1[L ≥ t]``, ``C_t`` the target score of ``L_t ⊙ x`` (removed
    pixels become ``baselines``), and the result ``L_t*`` with
    ``t* = argmax_t C_t``; exactly equal scores go to the smallest ``t`` (the
    largest mask). With ``threshold_mode="rank"`` ``t`` is the fraction of pixels
    kept: ``L_t = L ⊙ top(t)`` with ``top(t)`` the ``round(t·H·W)`` highest pixels
    (ties by row-major index); ties go to the largest fraction. (The authors' own
    calibration differs in more than the ranks: see
    :func:`threshold_calibration_authors`.)

    All ``N x T`` masked inputs are evaluated in one chunked sweep, at most
    ``max_examples_per_batch`` per forward pass (by default as many as the pass
    budget allows, :func:`~captum_cams.get_pass_budget`), under ``torch.no_grad()``.

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
                    None: as many as the pass budget allows. Default: None
        thresholds (sequence of float, optional): candidates ``t`` in ``(0, 1]``,
                    at least one. Default: ``(0.1, 0.2, ..., 1.0)``
        threshold_mode (str, optional): ``"value"`` (the paper) or ``"rank"``
                    (fraction of pixels kept). Default: ``"value"``
        score (str, optional): ``C_t`` as the softmax ``"probability"`` (the
                    paper) or the ``"logit"``. Default: ``"probability"``
        baselines (str, float or Tensor, optional): what removed pixels become:
                    ``None``/``"zero"`` (the paper's ``L_t ⊙ x``), ``"blur"``, a
                    constant or a tensor broadcastable to ``inputs``. Default: None
        normalize (bool, optional): min-max normalise the upsampled maps before
                    thresholding. False thresholds them as given, as Algorithm 1
                    does with Libra-CAM's averaged map (which lies in ``[0, 1]``);
                    the default True suits maps of any range. Default: True
        allow_blank (bool, optional): whether a candidate that keeps nothing
                    (``L_t = 0``, e.g. ``t`` above the maximum of an unnormalised
                    ``L``) may be chosen. Its score is that of the baseline image,
                    which says nothing about the map; with False such candidates
                    are left out of the arg-max, and where every candidate of an
                    example is blank its map is returned uncalibrated (``t* = 0``,
                    ``L`` itself) with one ``RuntimeWarning``. ``scores`` hold every
                    candidate's ``C_t`` either way. Default: True (Algorithm 1 as
                    printed)
        show_progress (bool, optional): a progress bar over the forward passes.
                    Default: False

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
    values = check_thresholds(thresholds)
    check_threshold_mode(threshold_mode)
    x = inputs.detach()
    maps = calibration_maps(attributions, x, normalize)
    keep, grid = sweep_keep(maps, values, threshold_mode)
    with progress_bar(show_progress, "threshold_calibration"):
        scores, _, _ = masked_scores(
            forward_func, x, keep, grid.shape[0], target, additional_forward_args,
            max_examples_per_batch, score, baselines, original=False,
        )  # fmt: skip
    examples = torch.arange(x.shape[0], device=x.device)
    with torch.no_grad():
        if allow_blank:
            best = first_argmax(scores)
            calibrated = keep(examples, best)
            return CalibrationResult(calibrated, thresholds=grid[best], scores=scores, grid=grid)
        blank = torch.stack(
            [keep(examples, torch.full_like(examples, step)).flatten(1).eq(0).all(dim=1)
             for step in range(grid.shape[0])],
            dim=1,
        )  # fmt: skip
        best = first_argmax(scores.masked_fill(blank, -torch.inf))
        calibrated = keep(examples, best)
        chosen = grid[best]
        all_blank = blank.all(dim=1)
        if bool(all_blank.any()):
            _warn_all_blank(all_blank, maps, values, threshold_mode)
            calibrated = torch.where(all_blank.view(-1, 1, 1, 1), maps, calibrated)
            chosen = chosen.masked_fill(all_blank, 0.0)
    return CalibrationResult(
        calibrated_maps=calibrated, thresholds=chosen, scores=scores, grid=grid
    )


def _warn_all_blank(
    all_blank: Tensor, maps: Tensor, thresholds: Sequence[float], threshold_mode: str
) -> None:
    r"""One warning line for the examples whose every calibration candidate is blank."""
    examples = all_blank.nonzero().flatten().tolist()
    peaks = maps[all_blank].flatten(1).amax(dim=1).tolist()
    if threshold_mode == "value":
        reason = (
            f"largest value(s) {', '.join(format(p, '.3g') for p in peaks)} below the "
            f"smallest threshold {min(thresholds):g}"
        )
    else:
        reason = "the map is zero on its highest-ranked pixels"
    warnings.warn(
        f"threshold calibration: every candidate threshold blanks the map of example(s) "
        f"{examples} ({reason}); they are returned uncalibrated (t* = 0); smaller "
        "thresholds or normalized maps keep a calibrated map",
        RuntimeWarning,
        stacklevel=4,
    )


def authors_kept_count(i: int, num_pixels: int) -> int:
    r"""
    ``int(0.1·i·N)``: the authors' pixel count for keep-fraction ``10·i %``.

    Args:
        i (int): the step, ``1 .. 10``.
        num_pixels (int): ``N``, the pixels of a map.

    Returns:
        *int*: the pixels kept (with the float rounding of the authors' code).

    Examples::

        >>> authors_kept_count(3, 224 * 224)
        15052
    """
    return int(0.1 * i * num_pixels)


@log_usage(part_of_slo=True)
def threshold_calibration_authors(
    forward_func: Callable,
    inputs: Tensor,
    attributions: Tensor,
    target: TargetType = None,
    additional_forward_args: Any = None,
    max_examples_per_batch: Optional[int] = None,
    baselines: BaselineLike = None,
    show_progress: bool = False,
) -> CalibrationResult:
    r"""
    The threshold calibration of Libra-CAM's released code, reproduced exactly
    (:class:`~captum_cams.LayerLibraCam`'s ``variant="authors"``); **not** the
    paper's Algorithm 1 (:func:`threshold_calibration`).

    With ``L = up(attributions)`` as given (not re-normalised) and ``N = H·W``:
    for ``i = 0, 1, …, 9`` the soft mask ``L ⊙ top_i`` keeps the
    ``int(0.1·i·N)`` highest pixels (keep-fraction ``10·i %``; ``i = 0`` keeps
    none), scored by the clipped increase of the softmax probability
    ``C_i = max(p_c(L ⊙ top_i ⊙ x) − p_c(x), 0)``. With ``i*`` the first arg-max,
    the returned map is the one **one decile past it**,
    ``L ⊙ top_{i*+1}`` (``int(0.1·(i*+1)·N)`` pixels; ``L`` itself for
    ``i* = 9``) — the off-by-one of the authors' code, kept because this function
    exists to reproduce it. Where no fraction raises the probability every
    ``C_i`` is 0, ``i* = 0`` and the map keeps the top 10 %.

    Args:
        forward_func (Callable): The model, returning ``N x num_classes`` logits.
        inputs (Tensor): ``N x C x H x W`` images; left unchanged.
        attributions (Tensor): maps ``N x (1 x) h x w`` (upsampled, not normalised).
        target (int, list[int], Tensor, optional): class per example. None: each
                    example's predicted class. Default: None
        additional_forward_args (Any, optional): further arguments of
                    ``forward_func``. Default: None
        max_examples_per_batch (int, optional): most inputs per forward pass.
                    None: as many as the pass budget allows. Default: None
        baselines (str, float or Tensor, optional): what removed pixels become.
                    Default: None (zeros)
        show_progress (bool, optional): a progress bar over the forward passes.
                    Default: False

    Returns:
        *CalibrationResult*: ``calibrated_maps`` as above; ``thresholds`` the
        keep-fraction of the returned map, ``(i* + 1) / 10``; ``scores`` the
        ``N x 10`` clipped increases ``C_i``; ``grid`` the scored keep-fractions
        ``0, 0.1, …, 0.9`` in the authors' order.

    Examples::

        >>> calibrated, kept_fraction, scores, grid = threshold_calibration_authors(
        ...     net, x, libra_maps, target=3)
    """
    check_image_batch(inputs)
    check_metric_args(max_examples_per_batch, "probability")
    x = inputs.detach()
    maps = calibration_maps(attributions, x, normalize=False)
    num_pixels = maps.shape[-1] * maps.shape[-2]
    counts = torch.tensor([authors_kept_count(i, num_pixels) for i in range(11)], device=x.device)
    keep = rank_keep(maps, counts)
    with progress_bar(show_progress, "threshold_calibration_authors"):
        o, y, _ = masked_scores(
            forward_func, x, keep, 10, target, additional_forward_args,
            max_examples_per_batch, "probability", baselines,
        )  # fmt: skip
    assert y is not None
    with torch.no_grad():
        scores = torch.clamp(o - y.unsqueeze(1), min=0)
        best = first_argmax(scores)
        calibrated = keep(torch.arange(x.shape[0], device=x.device), best + 1)
    grid = torch.tensor([i / 10 for i in range(10)], dtype=x.dtype, device=x.device)
    return CalibrationResult(
        calibrated_maps=calibrated,
        thresholds=(best + 1).to(x.dtype) / 10,
        scores=scores,
        grid=grid,
    )


def calibration_maps(attributions: Tensor, x: Tensor, normalize: bool) -> Tensor:
    r"""
    ``mm(up(attributions))`` (``normalize``) or ``up(attributions)``, checked.

    Args:
        attributions (Tensor): one map per example of ``x`` (``N x 1 x h x w`` or
                    ``N x h x w``), finite.
        x (Tensor): ``N x C x H x W`` the inputs; the maps take their size, dtype
                    and device.
        normalize (bool): min-max normalise each upsampled map.

    Returns:
        *Tensor*: ``N x 1 x H x W`` maps.

    Examples::

        >>> calibration_maps(torch.rand(2, 1, 7, 7), torch.rand(2, 3, 224, 224), True).shape
        torch.Size([2, 1, 224, 224])
    """
    if normalize:
        return prepare_maps(
            attributions, tuple(x.shape[-2:]), x.shape[0], dtype=x.dtype, device=x.device
        )
    maps = as_maps(attributions).detach().to(dtype=x.dtype, device=x.device)
    if maps.shape[0] != x.shape[0]:
        raise ValueError(
            f"attributions must hold one map per example ({x.shape[0]}); got batch size "
            f"{maps.shape[0]}"
        )
    if not torch.isfinite(maps).all():
        raise ValueError("attributions contains NaN or inf")
    return upsample(maps, tuple(x.shape[-2:]))


__all__ = [
    "CalibrationResult",
    "DEFAULT_CALIBRATION_THRESHOLDS",
    "first_argmax",
    "threshold_calibration",
    "threshold_calibration_authors",
]
