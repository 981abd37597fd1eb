#!/usr/bin/env python3
r"""The masked inputs of Score-CAM and its smoothed variants (SS-CAM, IS-CAM).

Every channel ``k`` of an example's activations, min-max normalised at layer resolution
and upsampled, ``M_k = up(mm(A_k))``, masks the input; the model's target score of the
masked input (or of a scaled or noisy version of it) makes the channel's weight.
"""

from typing import Callable, Optional, Sequence

import torch
from torch import Tensor

from captum_cams._utils.batching import multiplied_rows, take_examples
from captum_cams._utils.maps import minmax_normalize, upsample
from captum_cams._utils.scores import scores_of
from captum_cams.attr._base import CamContext, batched_target_scores


def channel_masks(
    activations: Tensor, examples: Tensor, channels: Tensor, size: Sequence[int]
) -> Tensor:
    r"""
    ``M = up(mm(A[e, k]))`` for each ``(examples[r], channels[r])``: ``R x 1 x H x W``.

    Args:
        activations (Tensor): ``N x K x h x w``.
        examples (Tensor): ``(R,)`` example of each mask.
        channels (Tensor): ``(R,)`` channel of each mask.
        size (sequence of two ints): the input's ``(H, W)``.

    Returns:
        *Tensor*: the masks, in ``[0, 1]``.
    """
    return upsample(minmax_normalize(activations[examples, channels][:, None]), size)


def masked_target_scores(
    forward_func: Callable,
    context: CamContext,
    row_example: Tensor,
    row_masks: Callable[[Tensor], Tensor],
    internal_batch_size: Optional[int],
    score: str,
) -> Tensor:
    r"""
    Target scores of the image batch multiplied by one mask per row, in chunks.

    Args:
        forward_func (Callable): the model.
        context (CamContext): the batch (its inputs, further arguments and targets).
        row_example (Tensor): ``(R,)`` example of each row.
        row_masks (Callable): maps a ``LongTensor`` of rows to their ``B x 1 x H x W``
                    (or ``B x C x H x W``) masks; called once per chunk, in row order.
        internal_batch_size (int, optional): rows per forward pass; None: from the
                    pass budget (:func:`captum_cams.get_pass_budget`).
        score (str): ``"logit"`` or ``"probability"``.

    Returns:
        *Tensor*: ``(R,)`` the target score of each row's masked input.
    """
    images = context.inputs[0]
    num_examples = images.shape[0]

    def masked_outputs(rows: Tensor) -> Tensor:
        examples = row_example[rows]
        masked = multiplied_rows(images, examples, row_masks(rows).to(images.dtype))
        others = take_examples(context.inputs[1:], examples, num_examples)
        extra = take_examples(context.additional_forward_args, examples, num_examples)
        return scores_of(forward_func(masked, *others, *extra), score)

    return batched_target_scores(
        masked_outputs,
        row_example,
        context.target,
        internal_batch_size,
        row=images[0],
        model=forward_func,
    )


def channel_scores(activations: Tensor, pair_scores: Callable[[Tensor, Tensor], Tensor]) -> Tensor:
    r"""
    A score for every ``(example, channel)``, evaluating constant channels once.

    A constant channel (all zero after a ReLU, say) normalises to the zero mask, so all
    constant channels of an example mask its input to the same image: that image is
    evaluated once per example and its score shared.

    Args:
        activations (Tensor): ``N x K x h x w``.
        pair_scores (Callable): ``pair_scores(examples, channels)`` returns the ``(R,)``
                    scores of the given pairs (example-major order).

    Returns:
        *Tensor*: ``N x K`` scores.
    """
    num_examples, num_channels = activations.shape[:2]
    device = activations.device
    flat = activations.flatten(2)
    constant_2d = flat.amax(dim=2) == flat.amin(dim=2)  # N x K
    first_2d = constant_2d & (constant_2d.long().cumsum(dim=1) == 1)
    constant, first_constant = constant_2d.flatten(), first_2d.flatten()
    all_example = torch.arange(num_examples, device=device).repeat_interleave(num_channels)
    all_channel = torch.arange(num_channels, device=device).repeat(num_examples)
    evaluated = ~constant | first_constant  # example-major order
    evaluated_scores = pair_scores(all_example[evaluated], all_channel[evaluated])
    scores = evaluated_scores.new_empty(num_examples * num_channels)
    scores[evaluated] = evaluated_scores
    shared = constant & ~first_constant
    if bool(shared.any()):
        zero_mask_score = evaluated_scores.new_empty(num_examples)
        zero_mask_score[all_example[first_constant]] = scores[first_constant]
        scores[shared] = zero_mask_score[all_example[shared]]
    return scores.view(num_examples, num_channels)


def check_stdevs(stdevs: object) -> float:
    r"""``stdevs`` must be a finite number ``>= 0``."""
    if isinstance(stdevs, bool) or not isinstance(stdevs, (int, float)):
        raise TypeError(f"stdevs must be a number; got {type(stdevs).__name__}")
    if not stdevs >= 0 or stdevs == float("inf"):
        raise ValueError(f"stdevs must be a finite number >= 0; got {stdevs!r}")
    return float(stdevs)


__all__ = [
    "channel_masks",
    "channel_scores",
    "check_stdevs",
    "masked_target_scores",
]
