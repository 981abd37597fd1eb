#!/usr/bin/env python3
r"""Confidence metrics of masked inputs: average drop, increase in confidence,
average probability increase, drop rate, average drop in deletion, TFT's relative
probability increase, and the threshold sweep with its API-vs-APD AUC.

Notation (``METHODS.md``): ``y`` is the score of the target class on ``x``, ``o``
the score on the masked input ``M ⊙ x`` (more generally
``M ⊙ x + (1 − M) ⊙ b`` with a baseline ``b``), ``M`` made from ``mm(up(I))``.
Scores are softmax probabilities unless ``score="logit"``.

A probability ``y`` can underflow to 0 (its logit ~88 below the largest in float32),
which would make ``(y − o)/y`` NaN. The ratios are then computed from the float64
log-probabilities, ``o/y = exp(log o − log y)``, the exact value of METHODS.md's
formulas: drops stay in ``[0, 1]``; an increase too large for the dtype is refused
with an error naming the examples (it is representable in float64).
"""

from typing import Any, Callable, NamedTuple, Optional, Sequence, Tuple, Union

import torch
from captum._utils.typing import TargetType
from captum.log import log_usage
from torch import Tensor

from captum_cams._utils.baselines import BaselineLike
from captum_cams._utils.batching import progress_bar, select_rows
from captum_cams._utils.guards import check_image_batch, preserved_model_state
from captum_cams._utils.masking import (
    build_mask,
    masked_rows,
    prepare_maps,
    sweep_baseline,
)
from captum_cams._utils.metric_scoring import (
    TargetScores,
    check_metric_args,
    joint_logits,
    probability_scores,
    relative_change,
)
from captum_cams._utils.thresholding import check_thresholds, sweep_keep

#: The thresholds of :func:`threshold_sweep`: 0, 0.1, ..., 1.0.
DEFAULT_SWEEP_THRESHOLDS: Tuple[float, ...] = tuple(i / 10 for i in range(11))


def _target_scores(
    forward_func: Callable,
    x: Tensor,
    target: TargetType,
    additional_forward_args: Any,
    max_examples_per_batch: Optional[int],
    score: str,
    num_steps: int,
    build: Callable[[Tensor, Tensor], Tensor],
) -> TargetScores:
    r"""``y`` of ``x`` and ``o`` of the ``N x num_steps`` inputs ``build`` makes, all
    evaluated in one chunked loop (:func:`joint_logits`)."""
    logits, idx = joint_logits(
        forward_func, x, target, additional_forward_args, max_examples_per_batch,
        num_steps, build,
    )  # fmt: skip
    if score == "probability":
        # probabilities from the logits, so that log-probabilities exist where a
        # probability underflows to 0 (its logit far below the largest one)
        return probability_scores(logits[:, 0], logits[:, 1:], idx)
    selected = logits.gather(2, idx.view(-1, 1, 1).expand(-1, logits.shape[1], 1)).squeeze(2)
    return TargetScores(selected[:, 0], selected[:, 1:], None, None)


class ConfidenceScores(NamedTuple):
    r"""
    The target scores of the inputs and of their masked copies, from one forward
    pass of each (:func:`confidence_scores`), and the confidence metrics read from
    them: average drop, increase in confidence, average probability increase, drop
    rate and the relative drop (average drop in deletion when the mask was deleted).

    Every ratio is exact where the target probability ``y`` underflows to 0 (it is
    then taken from the float64 log-probabilities, see the module).

    Attributes:
        original (Tensor): ``(N,)`` ``y``, the target score of each input.
        masked (Tensor): ``(N,)`` ``o``, the target score of each masked input.
        log_original (Tensor or None): ``(N,)`` float64 ``log y`` (probabilities
                    only).
        log_masked (Tensor or None): ``(N,)`` float64 ``log o`` (probabilities only).
        metric (str): the name errors of the ratios give. Default:
                    ``"confidence_scores"``.

    Examples::

        >>> scores = confidence_scores(net, x, maps, target=3)
        >>> scores.average_drop, scores.increase_in_confidence, scores.drop_rate
    """

    original: Tensor
    masked: Tensor
    log_original: Optional[Tensor] = None
    log_masked: Optional[Tensor] = None
    metric: str = "confidence_scores"

    def _target_scores(self) -> TargetScores:
        log_masked = None if self.log_masked is None else self.log_masked.unsqueeze(1)
        return TargetScores(self.original, self.masked.unsqueeze(1), self.log_original, log_masked)

    @property
    def average_drop(self) -> Tensor:
        r"""``(N,)`` ``max(y − o, 0) / y``."""
        change = relative_change(self._target_scores(), self.metric, may_grow=False)
        return torch.clamp(-change, min=0)[:, 0]

    @property
    def increase_in_confidence(self) -> Tensor:
        r"""``(N,)`` ``1[o > y]``."""
        return (self.masked > self.original).to(self.original.dtype)

    @property
    def average_probability_increase(self) -> Tensor:
        r"""``(N,)`` ``max(o − y, 0) / y``; an error names the examples whose
        increase exceeds the dtype's range."""
        return torch.clamp(relative_change(self._target_scores(), self.metric), min=0)[:, 0]

    @property
    def drop_rate(self) -> Tensor:
        r"""``(N,)`` ``1[o < y]``."""
        return (self.masked < self.original).to(self.original.dtype)

    @property
    def relative_drop(self) -> Tensor:
        r"""``(N,)`` ``(y − o) / y``, not clipped (average drop in deletion when the
        mask was deleted)."""
        return -relative_change(self._target_scores(), self.metric)[:, 0]


def _confidence_scores(
    forward_func: Callable,
    inputs: Tensor,
    attributions: Tensor,
    target: TargetType,
    additional_forward_args: Any,
    max_examples_per_batch: Optional[int],
    keep_top_fraction: Optional[float],
    threshold: Optional[float],
    binary: bool,
    baselines: BaselineLike,
    score: str,
    delete: bool,
    show_progress: bool,
    metric: str,
) -> ConfidenceScores:
    r"""The one masked-score computation behind every confidence metric: ``y`` of the
    inputs and ``o`` of ``M ⊙ x + (1 − M) ⊙ b`` (of the complement with ``delete``),
    one forward pass of each, in chunks."""
    check_image_batch(inputs)
    check_metric_args(max_examples_per_batch, score)
    with progress_bar(show_progress, metric), torch.no_grad():
        with preserved_model_state(forward_func):
            x = inputs.detach()
            maps = prepare_maps(
                attributions, tuple(x.shape[-2:]), x.shape[0], dtype=x.dtype, device=x.device
            )
            keep = build_mask(maps, keep_top_fraction, threshold, binary)
            if delete:
                keep = 1 - keep
            base = sweep_baseline(x, baselines)  # None for zeros: M ⊙ x itself

            def build(examples: Tensor, steps: Tensor) -> Tensor:
                return masked_rows(x, examples, select_rows(keep, examples), base)

            scores = _target_scores(
                forward_func, x, target, additional_forward_args, max_examples_per_batch,
                score, 1, build,
            )  # fmt: skip
    log_masked = None if scores.log_o is None else scores.log_o[:, 0]
    return ConfidenceScores(scores.y, scores.o[:, 0], scores.log_y, log_masked, metric)


@log_usage(part_of_slo=True)
def confidence_scores(
    forward_func: Callable,
    inputs: Tensor,
    attributions: Tensor,
    target: TargetType = None,
    additional_forward_args: Any = None,
    max_examples_per_batch: Optional[int] = None,
    keep_top_fraction: Optional[float] = None,
    threshold: Optional[float] = None,
    binary: bool = False,
    baselines: BaselineLike = None,
    score: str = "probability",
    delete: bool = False,
    show_progress: bool = False,
) -> ConfidenceScores:
    r"""
    The target scores of the inputs and of the masked inputs, from which average
    drop, increase in confidence, average probability increase and drop rate (or,
    with ``delete``, the average drop in deletion) are all read: one forward pass of
    the inputs and one of their masked copies serve them all.

    ``y`` is the target score of ``x``, ``o`` that of ``M ⊙ x + (1 − M) ⊙ b`` with
    ``M`` made from ``mm(up(I))`` (the soft map itself, a thresholded or top-fraction
    mask) and ``b`` the baseline (zeros by default: ``M ⊙ x``); with ``delete`` the
    complement ``1 − M`` is kept instead.

    Args:
        forward_func (Callable): The model, returning ``N x num_classes`` logits.
        inputs (Tensor): ``N x C x H x W`` images. Left unchanged; gradients are
                    never built (the call runs under ``torch.no_grad()``).
        attributions (Tensor): maps ``N x h x w`` or ``N x 1 x h x w`` of any spatial
                    size (e.g. a CAM at layer resolution); upsampled to ``H x W``
                    (bilinear, ``align_corners=False``) and min-max normalised.
        target (int, list[int], Tensor, optional): class per example, as Captum takes
                    it. None: each example's predicted class. Default: None
        additional_forward_args (Any, optional): further arguments of
                    ``forward_func``; tensors whose first dimension is ``N`` follow
                    their example into the chunks. Default: None
        max_examples_per_batch (int, optional): most inputs per forward pass.
                    None: as many as the pass budget allows
                    (:func:`~captum_cams.get_pass_budget`). Default: None
        keep_top_fraction (float, optional): instead of the soft mask, keep the
                    binary mask of this fraction of highest pixels. Default: None
        threshold (float, optional): instead of the soft mask ``I``, use
                    ``I ⊙ 1[I ≥ threshold]`` (binarised with ``binary``). Default: None
        binary (bool, optional): binarise the mask: ``1[I_t ≠ 0]``. Default: False
        baselines (str, float or Tensor, optional): what removed pixels become:
                    ``None``/``"zero"``, ``"blur"``, a constant or a tensor
                    broadcastable to ``inputs``. Default: None (zeros, i.e. ``M ⊙ x``)
        score (str, optional): ``"probability"`` (softmax) or ``"logit"``.
                    Default: ``"probability"``
        delete (bool, optional): keep the complement ``1 − M`` (the deletion of the
                    average drop in deletion). Default: False
        show_progress (bool, optional): a progress bar over the forward passes.
                    Default: False

    Returns:
        *ConfidenceScores*: ``y`` and ``o`` per example, with the metrics as
        attributes (``average_drop``, ``increase_in_confidence``,
        ``average_probability_increase``, ``drop_rate``, ``relative_drop``).

    Examples::

        >>> maps = LayerGradCam(net, net.conv4).attribute(x, target=3)
        >>> scores = confidence_scores(net, x, maps, target=3)
        >>> scores.average_drop.mean(), scores.increase_in_confidence.mean()
        >>> scores.average_probability_increase.mean(), scores.drop_rate.mean()
    """
    return _confidence_scores(
        forward_func, inputs, attributions, target, additional_forward_args,
        max_examples_per_batch, keep_top_fraction, threshold, binary, baselines, score,
        delete, show_progress, "confidence_scores",
    )  # fmt: skip


@log_usage(part_of_slo=True)
def average_drop(
    forward_func: Callable,
    inputs: Tensor,
    attributions: Tensor,
    target: TargetType = None,
    additional_forward_args: Any = None,
    max_examples_per_batch: Optional[int] = None,
    keep_top_fraction: Optional[float] = None,
    threshold: Optional[float] = None,
    binary: bool = False,
    baselines: BaselineLike = None,
    score: str = "probability",
    show_progress: bool = False,
) -> Tensor:
    r"""
    Average drop (AD, Libra's APD; Chattopadhyay et al., Grad-CAM++,
    https://arxiv.org/abs/1710.11063).

    ``max(y − o, 0) / y`` with ``y`` the target score of ``x`` and ``o`` that of the
    masked input (:func:`confidence_scores`); averaging over examples gives the
    paper's number.

    Args:
        forward_func (Callable): The model, returning ``N x num_classes`` logits.
        inputs (Tensor): ``N x C x H x W`` images; left unchanged, no gradients built.
        attributions (Tensor): maps ``N x (1 x) h x w`` of any spatial size,
                    upsampled and min-max normalised.
        target (int, list[int], Tensor, optional): class per example. None: the
                    predicted class. Default: None
        additional_forward_args (Any, optional): further model arguments; tensors
                    whose first dimension is ``N`` follow their example. Default: None
        max_examples_per_batch (int, optional): most inputs per forward pass.
                    None: as many as the pass budget allows. Default: None
        keep_top_fraction (float, optional): keep the binary mask of this fraction
                    of highest pixels (0.15 gives the Drop% at top-15 %).
                    Default: None
        threshold (float, optional): use ``I ⊙ 1[I ≥ threshold]``. Default: None
        binary (bool, optional): binarise the mask. Default: False
        baselines (str, float or Tensor, optional): what removed pixels become.
                    Default: None (zeros)
        score (str, optional): ``"probability"`` or ``"logit"``.
                    Default: ``"probability"``
        show_progress (bool, optional): a progress bar over the forward passes.
                    Default: False

    Returns:
        *Tensor* of shape ``(N,)``: the relative drop per example (lower is better).

    Examples::

        >>> net = ImageClassifier()
        >>> maps = LayerGradCam(net, net.conv4).attribute(x, target=3)   # N x 1 x 8 x 8
        >>> average_drop(net, x, maps, target=3)
        tensor([...])
    """
    return _confidence_scores(
        forward_func, inputs, attributions, target, additional_forward_args,
        max_examples_per_batch, keep_top_fraction, threshold, binary, baselines, score,
        False, show_progress, "average_drop",
    ).average_drop  # fmt: skip


@log_usage(part_of_slo=True)
def increase_in_confidence(
    forward_func: Callable,
    inputs: Tensor,
    attributions: Tensor,
    target: TargetType = None,
    additional_forward_args: Any = None,
    max_examples_per_batch: Optional[int] = None,
    keep_top_fraction: Optional[float] = None,
    threshold: Optional[float] = None,
    binary: bool = False,
    baselines: BaselineLike = None,
    score: str = "probability",
    show_progress: bool = False,
) -> Tensor:
    r"""
    Increase in confidence (IIC; Libra's increase rate IR; Grad-CAM++).

    ``1[o > y]`` (:func:`confidence_scores`); the mean over examples is the fraction
    whose score rose when only the map's region was kept.

    Args:
        forward_func (Callable): The model, returning ``N x num_classes`` logits.
        inputs (Tensor): ``N x C x H x W`` images; left unchanged, no gradients built.
        attributions (Tensor): maps ``N x (1 x) h x w`` of any spatial size,
                    upsampled and min-max normalised.
        target (int, list[int], Tensor, optional): class per example. None: the
                    predicted class. Default: None
        additional_forward_args (Any, optional): further model arguments; tensors
                    whose first dimension is ``N`` follow their example. Default: None
        max_examples_per_batch (int, optional): most inputs per forward pass.
                    None: as many as the pass budget allows. Default: None
        keep_top_fraction (float, optional): keep the binary mask of this fraction
                    of highest pixels (0.15 gives the Increase% at top-15 %).
                    Default: None
        threshold (float, optional): use ``I ⊙ 1[I ≥ threshold]``. Default: None
        binary (bool, optional): binarise the mask. Default: False
        baselines (str, float or Tensor, optional): what removed pixels become.
                    Default: None (zeros)
        score (str, optional): ``"probability"`` or ``"logit"``.
                    Default: ``"probability"``
        show_progress (bool, optional): a progress bar over the forward passes.
                    Default: False

    Returns:
        *Tensor* of shape ``(N,)``: 1.0 where the masked input scores higher, else 0.0.

    Examples::

        >>> net = ImageClassifier()
        >>> maps = LayerGradCam(net, net.conv4).attribute(x, target=3)
        >>> increase_in_confidence(net, x, maps, target=3).mean()
        tensor(...)
    """
    return _confidence_scores(
        forward_func, inputs, attributions, target, additional_forward_args,
        max_examples_per_batch, keep_top_fraction, threshold, binary, baselines, score,
        False, show_progress, "increase_in_confidence",
    ).increase_in_confidence  # fmt: skip


@log_usage(part_of_slo=True)
def average_probability_increase(
    forward_func: Callable,
    inputs: Tensor,
    attributions: Tensor,
    target: TargetType = None,
    additional_forward_args: Any = None,
    max_examples_per_batch: Optional[int] = None,
    keep_top_fraction: Optional[float] = None,
    threshold: Optional[float] = None,
    binary: bool = False,
    baselines: BaselineLike = None,
    score: str = "probability",
    show_progress: bool = False,
) -> Tensor:
    r"""
    Average probability increase (API; Libra-CAM).

    ``max(o − y, 0) / y`` (:func:`confidence_scores`). An increase from a target
    probability that underflows, too large for the dtype, is refused with an error
    naming the examples.

    Args:
        forward_func (Callable): The model, returning ``N x num_classes`` logits.
        inputs (Tensor): ``N x C x H x W`` images; left unchanged, no gradients built.
        attributions (Tensor): maps ``N x (1 x) h x w`` of any spatial size,
                    upsampled and min-max normalised.
        target (int, list[int], Tensor, optional): class per example. None: the
                    predicted class. Default: None
        additional_forward_args (Any, optional): further model arguments; tensors
                    whose first dimension is ``N`` follow their example. Default: None
        max_examples_per_batch (int, optional): most inputs per forward pass.
                    None: as many as the pass budget allows. Default: None
        keep_top_fraction (float, optional): keep the binary mask of this fraction
                    of highest pixels. Default: None
        threshold (float, optional): use ``I ⊙ 1[I ≥ threshold]``. Default: None
        binary (bool, optional): binarise the mask. Default: False
        baselines (str, float or Tensor, optional): what removed pixels become.
                    Default: None (zeros)
        score (str, optional): ``"probability"`` or ``"logit"``.
                    Default: ``"probability"``
        show_progress (bool, optional): a progress bar over the forward passes.
                    Default: False

    Returns:
        *Tensor* of shape ``(N,)``: the relative increase per example (higher is
        better).

    Examples::

        >>> net = ImageClassifier()
        >>> maps = LayerGradCam(net, net.conv4).attribute(x, target=3)
        >>> average_probability_increase(net, x, maps, target=3)
        tensor([...])
    """
    return _confidence_scores(
        forward_func, inputs, attributions, target, additional_forward_args,
        max_examples_per_batch, keep_top_fraction, threshold, binary, baselines, score,
        False, show_progress, "average_probability_increase",
    ).average_probability_increase  # fmt: skip


@log_usage(part_of_slo=True)
def drop_rate(
    forward_func: Callable,
    inputs: Tensor,
    attributions: Tensor,
    target: TargetType = None,
    additional_forward_args: Any = None,
    max_examples_per_batch: Optional[int] = None,
    keep_top_fraction: Optional[float] = None,
    threshold: Optional[float] = None,
    binary: bool = False,
    baselines: BaselineLike = None,
    score: str = "probability",
    show_progress: bool = False,
) -> Tensor:
    r"""
    Drop rate (DR; Libra-CAM).

    ``1[o < y]`` (:func:`confidence_scores`); the mean over examples is the fraction
    whose score fell when only the map's region was kept.

    Args:
        forward_func (Callable): The model, returning ``N x num_classes`` logits.
        inputs (Tensor): ``N x C x H x W`` images; left unchanged, no gradients built.
        attributions (Tensor): maps ``N x (1 x) h x w`` of any spatial size,
                    upsampled and min-max normalised.
        target (int, list[int], Tensor, optional): class per example. None: the
                    predicted class. Default: None
        additional_forward_args (Any, optional): further model arguments; tensors
                    whose first dimension is ``N`` follow their example. Default: None
        max_examples_per_batch (int, optional): most inputs per forward pass.
                    None: as many as the pass budget allows. Default: None
        keep_top_fraction (float, optional): keep the binary mask of this fraction
                    of highest pixels. Default: None
        threshold (float, optional): use ``I ⊙ 1[I ≥ threshold]``. Default: None
        binary (bool, optional): binarise the mask. Default: False
        baselines (str, float or Tensor, optional): what removed pixels become.
                    Default: None (zeros)
        score (str, optional): ``"probability"`` or ``"logit"``.
                    Default: ``"probability"``
        show_progress (bool, optional): a progress bar over the forward passes.
                    Default: False

    Returns:
        *Tensor* of shape ``(N,)``: 1.0 where the masked input scores lower, else 0.0.

    Examples::

        >>> net = ImageClassifier()
        >>> maps = LayerGradCam(net, net.conv4).attribute(x, target=3)
        >>> drop_rate(net, x, maps, target=3).mean()
        tensor(...)
    """
    return _confidence_scores(
        forward_func, inputs, attributions, target, additional_forward_args,
        max_examples_per_batch, keep_top_fraction, threshold, binary, baselines, score,
        False, show_progress, "drop_rate",
    ).drop_rate  # fmt: skip


@log_usage(part_of_slo=True)
def average_drop_in_deletion(
    forward_func: Callable,
    inputs: Tensor,
    attributions: Tensor,
    target: TargetType = None,
    additional_forward_args: Any = None,
    max_examples_per_batch: Optional[int] = None,
    keep_top_fraction: Optional[float] = None,
    threshold: Optional[float] = None,
    binary: bool = False,
    baselines: BaselineLike = None,
    score: str = "probability",
    show_progress: bool = False,
) -> Tensor:
    r"""
    Average drop in deletion (ADD; LIFT-CAM, https://arxiv.org/abs/2102.07799).

    ``(y − d) / y`` with ``d`` the score of ``(1 − M) ⊙ x``: the mask's complement is
    kept, i.e. the explained region is deleted (:func:`confidence_scores` with
    ``delete=True``). Not clipped: negative when deleting raises the score. With
    ``keep_top_fraction`` the top pixels are deleted.

    Args:
        forward_func (Callable): The model, returning ``N x num_classes`` logits.
        inputs (Tensor): ``N x C x H x W`` images; left unchanged, no gradients built.
        attributions (Tensor): maps ``N x (1 x) h x w`` of any spatial size,
                    upsampled and min-max normalised.
        target (int, list[int], Tensor, optional): class per example. None: the
                    predicted class. Default: None
        additional_forward_args (Any, optional): further model arguments; tensors
                    whose first dimension is ``N`` follow their example. Default: None
        max_examples_per_batch (int, optional): most inputs per forward pass.
                    None: as many as the pass budget allows. Default: None
        keep_top_fraction (float, optional): delete the binary mask of this
                    fraction of highest pixels. Default: None
        threshold (float, optional): delete ``I ⊙ 1[I ≥ threshold]``. Default: None
        binary (bool, optional): binarise the mask. Default: False
        baselines (str, float or Tensor, optional): what deleted pixels become.
                    Default: None (zeros)
        score (str, optional): ``"probability"`` or ``"logit"``.
                    Default: ``"probability"``
        show_progress (bool, optional): a progress bar over the forward passes.
                    Default: False

    Returns:
        *Tensor* of shape ``(N,)``: the relative drop after deletion (higher is
        better).

    Examples::

        >>> net = ImageClassifier()
        >>> maps = LayerGradCam(net, net.conv4).attribute(x, target=3)
        >>> average_drop_in_deletion(net, x, maps, target=3)
        tensor([...])
    """
    return _confidence_scores(
        forward_func, inputs, attributions, target, additional_forward_args,
        max_examples_per_batch, keep_top_fraction, threshold, binary, baselines, score,
        True, show_progress, "average_drop_in_deletion",
    ).relative_drop  # fmt: skip


@log_usage(part_of_slo=True)
def relative_probability_increase(
    forward_func: Callable,
    inputs: Tensor,
    attributions: Tensor,
    target: TargetType = None,
    additional_forward_args: Any = None,
    max_examples_per_batch: Optional[int] = None,
    threshold: float = 0.0,
    binary: bool = True,
    baselines: BaselineLike = None,
    score: str = "probability",
    show_progress: bool = False,
) -> Tensor:
    r"""
    TFT's relative probability increase (RPI; Han, Lee & Lee, Appl. Sci. 2022).

    ``I_τ = I ⊙ 1[I ≥ τ]``, ``M_τ = 1[I_τ ≠ 0]``, ``x̂ = M_τ ⊙ x``;
    ``RPI = max(ŷ − y, 0) / y``. This is :func:`average_probability_increase` with
    TFT's binary thresholded mask. The RPI curve over several τ (TFT's search for
    τ*) is ``threshold_sweep(..., thresholds=[0.1, ..., 1.0], binary=True).api``.

    Args:
        forward_func (Callable): The model, returning ``N x num_classes`` logits.
        inputs (Tensor): ``N x C x H x W`` images; left unchanged.
        attributions (Tensor): maps ``N x (1 x) h x w`` of any spatial size,
                    upsampled and min-max normalised.
        target (int, list[int], Tensor, optional): class per example. None: the
                    predicted class. Default: None
        additional_forward_args (Any, optional): further model arguments.
                    Default: None
        max_examples_per_batch (int, optional): most inputs per forward pass.
                    None: as many as the pass budget allows. Default: None
        threshold (float, optional): τ in ``[0, 1]``. Default: 0.0
        binary (bool, optional): TFT's binary mask ``M_τ``; False uses the soft
                    ``I_τ``. Default: True
        baselines (str, float or Tensor, optional): replacement of removed pixels.
                    Default: None (zeros)
        score (str, optional): ``"probability"`` or ``"logit"``.
                    Default: ``"probability"``
        show_progress (bool, optional): a progress bar over the forward passes.
                    Default: False

    Returns:
        *Tensor* of shape ``(N,)``: RPI per example.

    Examples::

        >>> rpi = relative_probability_increase(net, x, maps, target=3, threshold=0.5)
    """
    return _confidence_scores(
        forward_func, inputs, attributions, target, additional_forward_args,
        max_examples_per_batch, None, threshold, binary, baselines, score,
        False, show_progress, "relative_probability_increase",
    ).average_probability_increase  # fmt: skip


class ThresholdSweep(NamedTuple):
    r"""
    Result of :func:`threshold_sweep`; curves are ``N x T`` (one row per example).

    Attributes:
        thresholds (Tensor): the ``T`` thresholds, ascending.
        api (Tensor): average probability increase ``max(o − y, 0)/y`` per threshold.
        apd (Tensor): average (probability) drop ``max(y − o, 0)/y``.
        ir (Tensor): increase rate ``1[o > y]``.
        dr (Tensor): drop rate ``1[o < y]``.
        scores (Tensor): ``o``, the masked inputs' target scores.
        original (Tensor): ``y``, shape ``(N,)``.

    Examples::

        >>> sweep = threshold_sweep(net, x, maps, target=3)
        >>> sweep.api.mean(0), sweep.thresholds   # the dataset's API curve
    """

    thresholds: Tensor
    api: Tensor
    apd: Tensor
    ir: Tensor
    dr: Tensor
    scores: Tensor
    original: Tensor


@log_usage(part_of_slo=True)
def threshold_sweep(
    forward_func: Callable,
    inputs: Tensor,
    attributions: Tensor,
    target: TargetType = None,
    additional_forward_args: Any = None,
    max_examples_per_batch: Optional[int] = None,
    thresholds: Sequence[float] = DEFAULT_SWEEP_THRESHOLDS,
    binary: bool = False,
    baselines: BaselineLike = None,
    score: str = "probability",
    show_progress: bool = False,
) -> ThresholdSweep:
    r"""
    API, APD, IR and DR of thresholded masks over a range of thresholds
    (Libra-CAM's Fig. 1 and Table 1).

    For every threshold ``t``, the masked input is ``I_t ⊙ x`` with
    ``I_t = I ⊙ 1[I ≥ t]`` (soft, Libra) or ``M_t ⊙ x`` with ``M_t = 1[I_t ≠ 0]``
    (``binary=True``, TFT). All ``N·T`` masked inputs go through the model in
    chunks of ``max_examples_per_batch`` (by default as many as the pass budget
    allows, :func:`~captum_cams.get_pass_budget`), after one pass of the inputs.

    ``mm`` maps a non-constant map's maximum to exactly 1, so at ``t = 1`` the mask
    keeps the top pixel(s); a constant map becomes zeros, and is kept whole only at
    ``t = 0``.

    Args:
        forward_func (Callable): The model, returning ``N x num_classes`` logits.
        inputs (Tensor): ``N x C x H x W`` images; left unchanged.
        attributions (Tensor): maps ``N x (1 x) h x w`` of any spatial size,
                    upsampled and min-max normalised.
        target (int, list[int], Tensor, optional): class per example. None: the
                    predicted class. Default: None
        additional_forward_args (Any, optional): further model arguments.
                    Default: None
        max_examples_per_batch (int, optional): most inputs per forward pass.
                    None: as many as the pass budget allows. Default: None
        thresholds (sequence of float, optional): values in ``[0, 1]``.
                    Default: ``(0, 0.1, ..., 1.0)``
        binary (bool, optional): TFT's binary masks instead of Libra's soft ones.
                    Default: False
        baselines (str, float or Tensor, optional): replacement of removed pixels.
                    Default: None (zeros)
        score (str, optional): ``"probability"`` or ``"logit"``.
                    Default: ``"probability"``
        show_progress (bool, optional): a progress bar over the forward passes.
                    Default: False

    Returns:
        *ThresholdSweep*: per-example curves (``N x T``) and the thresholds.

    Examples::

        >>> sweep = threshold_sweep(net, x, maps, target=3)
        >>> sweep.api.mean(0)          # the dataset curve of API over thresholds
        >>> api_apd_auc(sweep)         # Libra's AUC of API vs APD
    """
    check_image_batch(inputs)
    check_metric_args(max_examples_per_batch, score)
    values = check_thresholds(thresholds, allow_zero=True)
    bar = progress_bar(show_progress, "threshold_sweep")
    with bar, torch.no_grad(), preserved_model_state(forward_func):
        x = inputs.detach()
        maps = prepare_maps(
            attributions, tuple(x.shape[-2:]), x.shape[0], dtype=x.dtype, device=x.device
        )
        base = sweep_baseline(x, baselines)  # None for zeros: M ⊙ x itself
        keep, t_tensor = sweep_keep(maps, values, "value", binary=binary)

        def build(examples: Tensor, steps: Tensor) -> Tensor:
            kept = keep(examples, steps)
            return masked_rows(x, examples, kept, base)

        scores = _target_scores(
            forward_func, x, target, additional_forward_args, max_examples_per_batch, score,
            len(values), build,
        )  # fmt: skip
        y, o = scores.y, scores.o
        yy = y.unsqueeze(1)
        return ThresholdSweep(
            thresholds=t_tensor,
            api=torch.clamp(relative_change(scores, "threshold_sweep"), min=0),
            apd=torch.clamp(-relative_change(scores, "threshold_sweep", may_grow=False), min=0),
            ir=(o > yy).to(o.dtype),
            dr=(o < yy).to(o.dtype),
            scores=o,
            original=y,
        )


def api_apd_auc(
    sweep: Union[ThresholdSweep, Tuple[Tensor, Tensor]],
    per_example: bool = False,
) -> Tensor:
    r"""
    Area under the API-vs-APD curve of a threshold sweep (Libra-CAM, Table 1).

    The curve (x = APD, y = API) is built and integrated like this:

    1. Unless ``per_example``, the curves are first averaged over examples
       (Libra's dataset curve: mean API and mean APD at every threshold).
    2. API is scaled to ``[0, 1]`` per curve: divided by its maximum over the
       thresholds (a curve whose API is 0 everywhere stays 0 and has AUC 0).
    3. The points are ordered by APD ascending; points with equal APD keep the
       order of their thresholds (ascending; a stable sort).
    4. The area is the trapezoid rule over these points with APD as abscissa. No
       end points are added: the area covers only the APD range the sweep reaches.

    Args:
        sweep (ThresholdSweep or tuple[Tensor, Tensor]): the result of
                    :func:`threshold_sweep`, or ``(api, apd)`` curves of shape
                    ``N x T`` (or ``T``), columns ordered by ascending threshold.
        per_example (bool, optional): one AUC per example's own curve instead of
                    the AUC of the mean curve. Default: False

    Returns:
        *Tensor*: a scalar, or ``(N,)`` with ``per_example=True``.

    Examples::

        >>> sweep = threshold_sweep(net, x, maps, target=3)
        >>> api_apd_auc(sweep)
        tensor(0.4210)
    """
    if isinstance(sweep, ThresholdSweep):
        api, apd = sweep.api, sweep.apd
    elif isinstance(sweep, tuple) and len(sweep) == 2:
        api, apd = sweep
    else:
        raise TypeError("sweep must be a ThresholdSweep or an (api, apd) tuple of tensors")
    if not isinstance(api, Tensor) or not isinstance(apd, Tensor) or api.shape != apd.shape:
        raise ValueError("sweep's api and apd must be tensors of the same shape")
    if api.dim() == 1:
        api, apd = api.unsqueeze(0), apd.unsqueeze(0)
    if api.dim() != 2 or api.shape[1] < 1:
        raise ValueError(f"sweep curves must be N x T; got shape {tuple(api.shape)}")
    if torch.isnan(api).any() or torch.isnan(apd).any():
        raise ValueError("sweep contains NaN")
    if not per_example:
        api, apd = api.mean(0, keepdim=True), apd.mean(0, keepdim=True)
    peak = api.max(dim=1, keepdim=True).values
    scaled = torch.where(peak > 0, api / torch.where(peak > 0, peak, 1), 0.0)
    order = torch.argsort(apd, dim=1, stable=True)
    xs = apd.gather(1, order)
    ys = scaled.gather(1, order)
    auc = torch.trapezoid(ys, xs, dim=1)
    return auc if per_example else auc.squeeze(0)
