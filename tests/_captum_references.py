#!/usr/bin/env python3
"""References the tests compare the package's own channel loops with: Captum's perturbation
classes (``FeatureAblation``, ``ShapleyValueSampling``, ``ShapleyValues``) run on a layer head,
and the exact ``2^K``-subset Shapley values of the channels."""

import math
from typing import Callable, List, Optional

import torch
from captum.attr import FeatureAblation, ShapleyValues, ShapleyValueSampling
from torch import Tensor

from captum_cams.attr._base import batched_target_scores, head_model

#: Above this many channels the exact enumeration (``2^K`` head evaluations per
#: example) is refused.
MAX_EXACT_CHANNELS: int = 16


def captum_forward(
    head: Callable[[Tensor, Tensor], Tensor], examples: Tensor
) -> Callable[[Tensor], Tensor]:
    r"""
    A head as the ``forward_func`` of Captum's perturbation classes
    (``FeatureAblation``, ``ShapleyValueSampling``, ``ShapleyValues``) run over layer
    activations.

    Captum's ``perturbations_per_eval`` stacks perturbed copies of the batch it was
    given along dimension 0, so row ``i`` of an evaluation belongs to example
    ``examples[i % len(examples)]``; that index is what :class:`LayerHead`'s
    whole-model fallback needs. Every call gives the head a copy: a head may work in
    place on its input (DenseNet's begins with an in-place ReLU), and Captum reuses
    the tensors it passes (its unperturbed inputs, ``ShapleyValueSampling``'s running
    coalition).

    Args:
        head (Callable): maps ``M x K x h x w`` activations and the ``(M,)`` example
                    index of each row to ``M x C`` outputs, as :class:`LayerHead`.
        examples (Tensor): ``(B,)`` the example of each row of the batch given to
                    Captum.

    Returns:
        *Callable*: maps ``(p B) x K x h x w`` activations to ``(p B) x C`` outputs.

    Examples::

        >>> forward = captum_forward(layer_head, torch.arange(len(activations)))
        >>> FeatureAblation(forward).attribute(activations, target=target,
        ...     feature_mask=channel_feature_mask(activations))
    """

    def forward(activations: Tensor) -> Tensor:
        rows = torch.arange(activations.shape[0], device=examples.device)
        return head(activations.clone(), examples[rows % examples.shape[0]])

    return forward


def channel_feature_mask(activations: Tensor) -> Tensor:
    r"""
    Captum's ``feature_mask`` with one feature per channel: ``1 x K x 1 x 1`` holding
    ``0 .. K-1``, broadcast by Captum over the examples and the ``h x w`` positions.

    Args:
        activations (Tensor): ``N x K x h x w`` layer activations.

    Returns:
        *Tensor*: ``1 x K x 1 x 1`` (int64, on the activations' device).

    Examples::

        >>> channel_feature_mask(torch.zeros(2, 3, 7, 7)).flatten()
        tensor([0, 1, 2])
    """
    num_channels = activations.shape[1]
    return torch.arange(num_channels, device=activations.device).view(1, num_channels, 1, 1)


def perturbations_per_eval(
    internal_batch_size: Optional[int], batch_size: int, num_features: int
) -> int:
    r"""
    Captum's ``perturbations_per_eval`` for at most ``internal_batch_size`` rows per
    head evaluation: each perturbation is one row per example, so
    ``internal_batch_size // batch_size`` perturbations (at least one, so a batch
    larger than ``internal_batch_size`` is evaluated one perturbation at a time);
    ``None`` evaluates all ``num_features`` perturbations at once.

    Args:
        internal_batch_size (int, optional): the package's chunk size, in rows.
        batch_size (int): ``N``, the rows of one perturbation.
        num_features (int): the features (channels) perturbed.

    Returns:
        *int*: ``perturbations_per_eval``, at least 1.

    Examples::

        >>> perturbations_per_eval(256, 3, 512)
        85
    """
    if internal_batch_size is None:
        return max(num_features, 1)
    return max(internal_batch_size // batch_size, 1)


def exact_channel_shapley(
    head: Callable[[Tensor], Tensor],
    activations: Tensor,
    target: Tensor,
    internal_batch_size: Optional[int] = None,
) -> Tensor:
    r"""
    The exact Shapley values of the channels of ``activations`` for the target
    outputs of ``head``, by enumerating all ``2^K`` channel subsets (absent channels
    zeroed): the reference that SHAP-CAM estimates and LIFT-CAM approximates.

    Args:
        head (Callable): maps ``M x K x h x w`` activations to ``M x C`` outputs.
        activations (Tensor): ``N x K x h x w`` layer activations, ``K <= 16``.
        target (Tensor): ``(N,)`` class index per example.
        internal_batch_size (int, optional): subsets evaluated at once; ``None``:
                    as many as the pass budget allows
                    (:func:`~captum_cams.get_pass_budget`). Default: None.

    Returns:
        *Tensor*: ``N x K`` Shapley values; each row sums to
        ``head(A)_c - head(0)_c``.

    Examples::

        >>> phi = exact_channel_shapley(head, activations, torch.tensor([3, 7]))
    """
    # The own 2^K-subset loop, not Captum's ShapleyValues (captum_channel_shapley with
    # orders=None, tested equal): ShapleyValues walks all K! orders, K evaluations
    # each, and benchmarks/captum_reuse_speed.py measured this loop 35x faster in the
    # same run at K = 5 (ResNet-20 layer2); it also keeps float64 (Captum
    # accumulates in float32).
    num_examples, num_channels = activations.shape[:2]
    if num_channels > MAX_EXACT_CHANNELS:
        raise ValueError(
            f"exact enumeration needs 2^K head evaluations per example; K = "
            f"{num_channels} > {MAX_EXACT_CHANNELS}: use LayerShapCam instead"
        )
    device = activations.device
    subsets = torch.arange(2**num_channels, device=device)
    bits = 2 ** torch.arange(num_channels, device=device)
    members = (subsets[:, None] & bits) > 0  # (2^K, K)
    num_subsets = subsets.shape[0]
    row_example = torch.arange(num_examples, device=device).repeat_interleave(num_subsets)

    def subset_outputs(rows: Tensor) -> Tensor:
        examples = row_example[rows]
        present = members[rows % num_subsets].to(activations.dtype)
        return head(activations[examples] * present[:, :, None, None])

    values = batched_target_scores(
        subset_outputs,
        row_example,
        target.to(device),
        internal_batch_size,
        row=activations[0],
        model=head_model(head),
        head=True,
    ).view(num_examples, num_subsets)
    sizes = members.sum(dim=1)
    weights = torch.tensor(
        [
            math.factorial(s) * math.factorial(num_channels - s - 1) / math.factorial(num_channels)
            if s < num_channels
            else 0.0
            for s in range(num_channels + 1)
        ],
        dtype=values.dtype,
        device=device,
    )[sizes]
    phi = values.new_zeros(num_examples, num_channels)
    for k in range(num_channels):
        without = ~members[:, k]
        gain = values[:, subsets[without] | bits[k]] - values[:, subsets[without]]
        phi[:, k] = (gain * weights[without]).sum(dim=1)
    return phi


def captum_ablation_differences(
    head: Callable[[Tensor, Tensor], Tensor],
    activations: Tensor,
    target: Tensor,
    internal_batch_size: Optional[int] = 256,
) -> Tensor:
    r"""
    ``y_c - y_c^(k)`` for every channel ``k`` by Captum's ``FeatureAblation``, run on
    the head over the layer's activations with one feature per channel
    (``feature_mask`` broadcast over ``h x w``), ablated to the paper's baseline 0.
    Divided by ``y_c`` these are Ablation-CAM's weights.

    Args:
        head (Callable): maps ``M x K x h x w`` activations and the ``(M,)`` example
                    index of each row to ``M x C`` outputs (a :class:`LayerHead`).
        activations (Tensor): ``N x K x h x w`` layer activations.
        target (Tensor): ``(N,)`` class index per example.
        internal_batch_size (int, optional): at most this many rows per head
                    evaluation (``perturbations_per_eval = internal_batch_size // N``,
                    at least 1); ``None`` evaluates all ``N x K`` at once. Default: 256.

    Returns:
        *Tensor*: ``N x K``, ``head(A)_c - head(A with channel k zeroed)_c``, in the
        activations' dtype.

    Examples::

        >>> differences = captum_ablation_differences(head, activations, torch.tensor([3, 7]))
    """
    num_examples, num_channels = activations.shape[:2]
    examples = torch.arange(num_examples, device=activations.device)
    differences = FeatureAblation(captum_forward(head, examples)).attribute(
        activations,
        baselines=0.0,
        target=target,
        feature_mask=channel_feature_mask(activations),
        perturbations_per_eval=perturbations_per_eval(
            internal_batch_size, num_examples, num_channels
        ),
    )
    return differences[:, :, 0, 0]  # every position of a channel holds its value


def captum_channel_shapley(
    head: Callable[[Tensor, Tensor], Tensor],
    activations: Tensor,
    target: Tensor,
    orders: Optional[Tensor] = None,
    internal_batch_size: Optional[int] = 256,
) -> Tensor:
    r"""
    Shapley values of the channels by Captum: ``ShapleyValueSampling`` over the given
    channel orders, or, with ``orders=None``, ``ShapleyValues`` (all ``K!`` orders),
    run on the head over the layer's activations with one feature per channel
    (``feature_mask`` broadcast over ``h x w``) and the baseline 0.

    The orders are handed to ``ShapleyValueSampling`` as its permutation generator
    (its own draws from the global random state). ``P x K`` orders are shared by the
    whole batch, as Captum's own scheme, and evaluated in one call; ``N x P x K``
    orders (SHAP-CAM's, :func:`permutation_orders`) are each example's own, one call
    per example, and then the result equals :func:`sampled_channel_shapley` for the
    same orders. Captum accumulates the attributions in float32
    (``shapley_value.py``, ``total_attrib``), so for float64 activations the result
    is equal to float32 rounding only.

    Args:
        head (Callable): maps ``M x K x h x w`` activations and the ``(M,)`` example
                    index of each row to ``M x C`` outputs (a :class:`LayerHead`).
        activations (Tensor): ``N x K x h x w`` layer activations.
        target (Tensor): ``(N,)`` class index per example.
        orders (Tensor, optional): ``P x K`` channel orders for the batch or
                    ``N x P x K`` per example. Default: None (all orders, exact).
        internal_batch_size (int, optional): at most this many rows per head
                    evaluation, mapped to ``perturbations_per_eval`` (Captum never
                    mixes two orders in one evaluation); ``None``: one order at a
                    time. Default: 256.

    Returns:
        *Tensor*: ``N x K`` Shapley values (estimates, with ``orders``), in the
        activations' dtype.

    Examples::

        >>> alpha = captum_channel_shapley(head, activations, target,
        ...                                permutation_orders(2, 10, 512, seed=0))
    """
    num_channels = activations.shape[1]
    mask = channel_feature_mask(activations)

    def shapley(examples: Tensor, given: Optional[List[List[int]]]) -> Tensor:
        forward = captum_forward(head, examples)
        chunk = perturbations_per_eval(internal_batch_size, examples.shape[0], num_channels)
        arguments = dict(baselines=0.0, target=target[examples], feature_mask=mask)
        if given is None:
            method: ShapleyValueSampling = ShapleyValues(forward)
        else:
            method = ShapleyValueSampling(forward)
            method.permutation_generator = lambda _features, _samples: iter(given)
            arguments["n_samples"] = len(given)
        values = method.attribute(activations[examples], perturbations_per_eval=chunk, **arguments)
        return values[:, :, 0, 0].to(activations.dtype)

    everyone = torch.arange(activations.shape[0], device=activations.device)
    if orders is None or orders.dim() == 2:
        return shapley(everyone, None if orders is None else orders.tolist())
    return torch.cat(
        [shapley(everyone[n : n + 1], orders[n].tolist()) for n in range(len(everyone))]
    )
