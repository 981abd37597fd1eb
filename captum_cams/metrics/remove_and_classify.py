#!/usr/bin/env python3
r"""Remove-and-classify (CALM, Kim et al., ICCV 2021, Sec. 5).

For each fraction ``k``, the ``round(k·H·W)`` highest pixels of ``mm(up(I))`` are
erased (replaced by a blurred or zero baseline) and the model classifies the result;
the same is done with ``round(k·H·W)`` pixels chosen at random (seeded). A map that
finds the evidence should make accuracy fall faster than random erasure.

The score is the paper's ratio ``A_k / A_k^r`` (accuracy after erasing the map's
top ``k`` over accuracy after erasing ``k`` at random; below 1: the map's pixels
matter more than random ones); the difference ``A_k − A_k^r`` is kept as
``accuracy_difference``. The paper's text erases with a blur, the authors'
released evaluation script with zeros: both are ``baselines`` here.
"""

from typing import Any, Callable, NamedTuple, Optional, Sequence

import torch
from captum._utils.typing import TargetType
from captum.log import log_usage
from torch import Tensor

from captum_cams._utils.baselines import BaselineLike
from captum_cams._utils.batching import progress_bar, select_rows
from captum_cams._utils.guards import check_image_batch, format_target, preserved_model_state
from captum_cams._utils.masking import make_baseline, masked_rows, prepare_maps
from captum_cams._utils.metric_scoring import (
    check_metric_args,
    joint_logits,
    perturbed_scores,
)
from captum_cams._utils.thresholding import (
    check_fraction,
    count_of_fraction,
    pixel_ranks,
    top_k_mask,
)

DEFAULT_FRACTIONS = tuple(k / 10 for k in range(1, 10))


class RemoveAndClassifyResult(NamedTuple):
    r"""
    Result of :func:`remove_and_classify`.

    Attributes:
        fractions (Tensor): ``(K,)`` erased fractions.
        correct (Tensor): ``N x K``, 1.0 where the input with its top pixels erased
                    is still classified as the target.
        random_correct (Tensor): ``N x K``, the same after erasing random pixels.
        accuracy (Tensor): ``(K,)`` mean of ``correct``.
        random_accuracy (Tensor): ``(K,)`` mean of ``random_correct``.
        relative_accuracy (Tensor): ``(K,)`` the paper's ratio
                    ``accuracy / random_accuracy`` (below 1: the map's pixels
                    matter more than random ones; lower is better); NaN where
                    ``random_accuracy`` is 0.
        accuracy_difference (Tensor): ``(K,)`` ``accuracy − random_accuracy``
                    (negative: the map's pixels matter more; lower is better).

    Examples::

        >>> result = remove_and_classify(net, x, maps, target=3)
        >>> result.relative_accuracy   # below 1: the map's pixels matter more than random ones
    """

    fractions: Tensor
    correct: Tensor
    random_correct: Tensor
    accuracy: Tensor
    random_accuracy: Tensor
    relative_accuracy: Tensor
    accuracy_difference: Tensor


@log_usage(part_of_slo=True)
def remove_and_classify(
    forward_func: Callable,
    inputs: Tensor,
    attributions: Tensor,
    target: TargetType = None,
    additional_forward_args: Any = None,
    max_examples_per_batch: Optional[int] = None,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    baselines: BaselineLike = "blur",
    seed: int = 0,
    show_progress: bool = False,
) -> RemoveAndClassifyResult:
    r"""
    Classification accuracy after erasing the top-``k`` pixels of the map, against
    erasing ``k`` random pixels: the paper's ratio ``A_k / A_k^r`` and the
    difference ``A_k − A_k^r``.

    Args:
        forward_func (Callable): The model, returning ``N x num_classes`` logits.
        inputs (Tensor): ``N x C x H x W`` images; left unchanged, no gradients built.
        attributions (Tensor): maps ``N x (1 x) h x w`` of any spatial size.
        target (int, list[int], Tensor, optional): the true labels. None: the model's
                    prediction on the clean input (then accuracy means "prediction
                    kept"). Default: None
        additional_forward_args (Any, optional): further model arguments.
                    Default: None
        max_examples_per_batch (int, optional): most erased inputs per forward pass.
                    None: as many as the pass budget allows
                    (:func:`~captum_cams.get_pass_budget`). Default: None
        fractions (sequence of float, optional): fractions in ``(0, 1]`` to erase.
                    Default: ``0.1, 0.2, …, 0.9``
        baselines (str, float or Tensor, optional): ``"blur"`` (default, Gaussian,
                    11 pixels, sigma 5), ``"zero"``, a constant or a tensor.
        seed (int, optional): seed of the random erasure; the random pixel order of
                    each example is drawn once (a CPU generator), so neither the
                    chunk size nor the global RNG changes it. Default: 0
        show_progress (bool, optional): a progress bar over the forward passes.
                    Default: False

    Returns:
        *RemoveAndClassifyResult*: per-example correctness and accuracies.

    Examples::

        >>> result = remove_and_classify(net, x, maps, target=labels)
        >>> result.relative_accuracy          # A_k / A_k^r, the paper's score
        >>> result.accuracy_difference        # A_k - A_k^r
    """
    check_image_batch(inputs)
    check_metric_args(max_examples_per_batch, "probability")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int; got {type(seed).__name__}")
    values = [check_fraction(f, "fractions") for f in fractions]
    if not values:
        raise ValueError("fractions must hold at least one value")
    bar = progress_bar(show_progress, "remove_and_classify")
    with bar, torch.no_grad(), preserved_model_state(forward_func):
        x = inputs.detach()
        num, size = x.shape[0], tuple(x.shape[-2:])
        num_pixels = size[0] * size[1]
        maps = prepare_maps(attributions, size, num, dtype=x.dtype, device=x.device)
        ranks = pixel_ranks(maps)
        generator = torch.Generator().manual_seed(seed)
        random_ranks = torch.stack(
            [torch.randperm(num_pixels, generator=generator) for _ in range(num)]
        ).to(x.device)
        counts = torch.tensor([count_of_fraction(f, num_pixels) for f in values], device=x.device)
        base = make_baseline(x, baselines)
        num_k = len(values)

        def build(examples: Tensor, steps: Tensor) -> Tensor:
            # steps 0..K-1: the map's order; K..2K-1: the random order
            use_random = (steps >= num_k).reshape(-1, 1)
            order = torch.where(
                use_random, select_rows(random_ranks, examples), select_rows(ranks, examples)
            )
            erase = top_k_mask(order, counts[steps % num_k], size, x.dtype)
            return masked_rows(x, examples, 1 - erase, base)

        if target is None:
            # the unmasked inputs (for the predicted class) in the same loop as the erased
            outputs, idx = joint_logits(
                forward_func, x, target, additional_forward_args, max_examples_per_batch,
                2 * num_k, build,
            )  # fmt: skip
            logits = outputs[:, 1:]
        else:
            # a given class needs no unmasked pass: only the erased inputs are scored
            idx = format_target(target, num, x.device)
            logits = perturbed_scores(
                forward_func, x, 2 * num_k, build, idx, additional_forward_args,
                max_examples_per_batch, "logit", return_all=True, check_target=True,
            )  # fmt: skip
        hits = (logits.argmax(dim=2) == idx.unsqueeze(1)).to(x.dtype)
        correct, random_correct = hits[:, :num_k], hits[:, num_k:]
        accuracy, random_accuracy = correct.mean(0), random_correct.mean(0)
        ratio = torch.where(
            random_accuracy > 0,
            accuracy / random_accuracy.clamp_min(torch.finfo(x.dtype).tiny),
            torch.full_like(accuracy, float("nan")),
        )
        return RemoveAndClassifyResult(
            fractions=torch.tensor(values, dtype=x.dtype, device=x.device),
            correct=correct,
            random_correct=random_correct,
            accuracy=accuracy,
            random_accuracy=random_accuracy,
            relative_accuracy=ratio,
            accuracy_difference=accuracy - random_accuracy,
        )
