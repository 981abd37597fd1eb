#!/usr/bin/env python3
import math
from typing import Any, Callable, List, Optional, Tuple, Union

import torch
from captum.attr import ShapleyValues, ShapleyValueSampling
from captum.log import log_usage
from torch import Tensor

from captum_cams._utils.guards import TargetLike, check_positive_int
from captum_cams.attr._base import (
    CamContext,
    CamOutput,
    HeadCamBase,
    batched_target_scores,
    head_model,
)
from captum_cams.attr._head import captum_forward, channel_feature_mask, perturbations_per_eval

#: Above this many channels the exact enumeration (``2^K`` head evaluations per
#: example) is refused.
MAX_EXACT_CHANNELS: int = 16


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


def permutation_orders(
    num_examples: int, num_permutations: int, num_channels: int, seed: Optional[int]
) -> Tensor:
    r"""
    ``num_permutations`` uniformly random orders of the ``K`` channels per example,
    independent across examples: ``argsort`` of ``torch.rand`` drawn from an own CPU
    ``torch.Generator`` seeded with ``seed`` (``None``: fresh entropy), so the global
    random state is untouched and example ``n``'s orders do not depend on the batch
    size.

    Args:
        num_examples (int): ``N``, the examples.
        num_permutations (int): ``P``, the orders per example.
        num_channels (int): ``K``, the channels.
        seed (int, optional): seed of the generator; ``None`` draws a fresh seed.

    Returns:
        *Tensor*: ``N x P x K`` (CPU, int64); ``orders[n, p]`` lists the channels in
        the order they join.

    Examples::

        >>> permutation_orders(2, 10, 512, seed=0).shape
        torch.Size([2, 10, 512])
    """
    generator = torch.Generator(device="cpu")
    if seed is None:
        generator.seed()  # fresh entropy, not the global generator's
    else:
        generator.manual_seed(seed)
    return torch.rand(num_examples, num_permutations, num_channels, generator=generator).argsort(
        dim=-1
    )


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


def sampled_channel_shapley(
    head: Callable[[Tensor, Tensor], Tensor],
    activations: Tensor,
    target: Tensor,
    orders: Tensor,
    internal_batch_size: Optional[int] = None,
) -> Tensor:
    r"""
    SHAP-CAM's permutation estimate of the channels' Shapley values, by the
    package's own loop: per example the empty and the full channel set and, for every
    order, its ``K - 1`` proper non-empty prefixes (absent channels zeroed), all in
    chunks of ``internal_batch_size`` rows; channel ``k``'s value is the mean over
    the orders of the target output's change when it joins.

    :func:`captum_channel_shapley` computes the same with Captum's
    ``ShapleyValueSampling`` (tested equal); SHAP-CAM uses this loop because it
    measured faster (see :class:`LayerShapCam`).

    Args:
        head (Callable): maps ``M x K x h x w`` activations and the ``(M,)`` example
                    index of each row to ``M x C`` outputs (a :class:`LayerHead`).
        activations (Tensor): ``N x K x h x w`` layer activations.
        target (Tensor): ``(N,)`` class index per example.
        orders (Tensor): ``N x P x K`` channel orders per example, as
                    :func:`permutation_orders`.
        internal_batch_size (int, optional): rows evaluated by the head at once;
                    ``None``: as many as the pass budget allows
                    (:func:`~captum_cams.get_pass_budget`). Default: None.

    Returns:
        *Tensor*: ``N x K``; every order's credits sum to
        ``head(A)_c - head(0)_c`` exactly, so the mean does too.

    Examples::

        >>> orders = permutation_orders(len(activations), 10, activations.shape[1], 0)
        >>> alpha = sampled_channel_shapley(head, activations, target, orders)
    """
    num_examples, num_channels = activations.shape[:2]
    num_permutations = orders.shape[1]
    device = activations.device
    # ranks[n, p, k]: the position at which channel k joins in order p
    ranks = orders.argsort(dim=-1).to(device)

    # Rows per example: the empty set, the full set, then for every order the
    # K - 1 proper non-empty prefixes.
    inner = max(num_channels - 1, 0)
    per_example = 2 + num_permutations * inner
    row_example = torch.arange(num_examples, device=device).repeat_interleave(per_example)

    def prefix_outputs(rows: Tensor) -> Tensor:
        examples = row_example[rows]
        local = rows - examples * per_example
        prefix = torch.where(local == 1, num_channels, 0)
        order = torch.zeros_like(local)
        inside = local >= 2
        if inner:
            order = torch.where(inside, (local - 2) // inner, 0)
            prefix = torch.where(inside, (local - 2) % inner + 1, prefix)
        present = ranks[examples, order] < prefix[:, None]
        # one copy, masked in place: 11 ms instead of 18 ms per 256-row chunk at
        # resnet18 layer4 (a second full-size buffer is allocated and filled otherwise)
        masked = activations.index_select(0, examples).mul_(present[:, :, None, None])
        return head(masked, examples)

    scores = batched_target_scores(
        prefix_outputs,
        row_example,
        target,
        internal_batch_size,
        row=activations[0],
        model=head_model(head),
        head=True,
    ).view(num_examples, per_example)
    # values[n, p, j]: target logit with the first j channels of order p present
    values = torch.cat(
        [
            scores[:, None, :1].expand(num_examples, num_permutations, 1),
            scores[:, 2:].reshape(num_examples, num_permutations, inner),
            scores[:, None, 1:2].expand(num_examples, num_permutations, 1),
        ],
        dim=2,
    )
    marginal = values.gather(2, ranks + 1) - values.gather(2, ranks)
    return marginal.mean(dim=1)


class LayerShapCam(HeadCamBase):
    r"""
    SHAP-CAM_|Pi|: channel weights ``alpha_k`` = the Shapley values of the layer's
    channels for the target logit, estimated by permutation sampling; map
    ``relu(sum_k alpha_k A_k)``.

    For each of ``num_permutations`` random orders of the ``K`` channels (drawn per
    example by :func:`permutation_orders`), channels
    are switched on one after the other (absent channels are zero at the layer) and
    channel ``k`` is credited with the change of the target logit when it joins,
    ``F_c(h(a')) - F_c(h(a' \ k))``; ``alpha_k`` is the average over the orders. For
    every single order the credits sum to ``F_c(A) - F_c(0)`` exactly (they
    telescope), and the estimate converges to the exact Shapley values like
    ``1/sqrt(num_permutations)``.

    Only the model's head is evaluated: ``N x (num_permutations x (K - 1) + 2)``
    rows in chunks of ``internal_batch_size`` (by default as many as the pass budget
    allows). Permutations come from an own
    ``torch.Generator`` seeded with ``seed``; the global random state is untouched.
    The weights equal Captum's ``ShapleyValueSampling`` on the head, one feature per
    channel, baseline 0, given the same orders (:func:`captum_channel_shapley`;
    Captum's own generator would draw one order per call for the whole batch from
    the global random state).

    Paper: Jung & Oh, "Towards Better Explanations of Class Activation Mapping",
    ICCV 2021 (Algorithm 1). https://arxiv.org/abs/2102.05228

    Args:
        forward_func (Callable or torch.nn.Module): the model.
        layer (torch.nn.Module): the convolutional layer whose output ``A``
                    (``N x K x h x w``) the map is computed on.
        device_ids (list[int], optional): device ids for a model wrapped in
                    ``DataParallel``, as in Captum. Default: None.
        head (torch.nn.Module, optional): the part of the model from the layer's
                    output to the model's output. Default: None (split from the
                    model with ``torch.fx``, else the whole model is re-run with the
                    layer's output substituted). Checked once against the model.
        reshape_transform (Callable, optional): turns the layer's output into
                    ``N x K x h x w`` (pytorch-grad-cam's argument), e.g.
                    :func:`~captum_cams.vit_reshape_transform`; it must only select
                    and reorder the output's values, so that modified maps can be
                    put back into it (the values it drops, such as ViT's CLS token,
                    are kept as they are). Default: None.

    Examples::

        >>> net = torchvision.models.resnet18().eval()
        >>> shap = LayerShapCam(net, net.layer4)
        >>> maps, alpha = shap.attribute(torch.randn(2, 3, 224, 224), target=[3, 7],
        ...                              num_permutations=20, return_weights=True)
    """

    def _weights(self, context: CamContext) -> Tensor:
        orders = permutation_orders(
            context.activations.shape[0],
            context.options["num_permutations"],
            context.activations.shape[1],
            context.options["seed"],
        )
        # The own loop, not Captum's ShapleyValueSampling (captum_channel_shapley,
        # tested equal for the same orders): Captum accumulates in float32, which would
        # break float64 completeness (sum = F_c(A) - F_c(0) to 1e-12), and
        # benchmarks/captum_reuse_speed.py measured this loop 3.4x (resnet18 layer4)
        # and 15x (CIFAR ResNet-20 layer3) faster in the same run (3.1x and 5.6x
        # against one call with the orders shared by the batch, Captum's own scheme),
        # as Captum adds one channel per Python step; 1.3-1.4x where the head
        # dominates (ResNet-20 layer2; benchmarks/README.md).
        return sampled_channel_shapley(
            self._verified_head(context),
            context.activations,
            context.target,
            orders,
            context.options["internal_batch_size"],
        )

    @log_usage()
    def attribute(
        self,
        inputs: Union[Tensor, Tuple[Tensor, ...]],
        target: TargetLike = None,
        additional_forward_args: Any = None,
        attribute_to_layer_input: bool = False,
        relu_attributions: bool = True,
        return_weights: bool = False,
        num_permutations: int = 10,
        seed: Optional[int] = 0,
        internal_batch_size: Optional[int] = None,
        show_progress: bool = False,
    ) -> CamOutput:
        r"""
        Args:
            inputs (Tensor or tuple[Tensor, ...]): the image batch ``N x C x H x W``
                        (first, when the model takes several inputs).
            target (int, list[int], Tensor, optional): the class per example, as in
                        Captum. ``None`` takes each example's predicted class.
                        Default: None.
            additional_forward_args (Any, optional): further arguments of
                        ``forward_func``, after the inputs. Default: None.
            attribute_to_layer_input (bool, optional): compute the map on the
                        layer's input instead of its output (the method then works
                        on the layer followed by the head). Default: False.
            relu_attributions (bool, optional): apply ReLU to the map. Default: True.
            return_weights (bool, optional): also return the ``N x K`` channel
                        weights. Default: False.
            num_permutations (int, optional): ``|Pi|``, the random channel orders
                        per example. Default: 10 (the paper's SHAP-CAM_10).
            seed (int, optional): seed of the permutations' own generator; ``None``
                        draws a fresh seed. Default: 0.
            internal_batch_size (int, optional): masked activations evaluated by the
                        head at once; ``None``: as many as the pass budget allows
                        (:func:`~captum_cams.get_pass_budget`). Default: None.
            show_progress (bool, optional): a progress bar over the head
                        evaluations. Default: False.

        Returns:
            *Tensor* or (*Tensor*, *Tensor*): the maps ``N x 1 x h x w`` at layer
            resolution, and the weights when ``return_weights`` is set.

        Examples::

            >>> maps, alpha = LayerShapCam(net, net.layer4).attribute(
            ...     images, target=labels, num_permutations=100, return_weights=True)
        """
        check_positive_int(num_permutations, "num_permutations", allow_none=False)
        check_positive_int(internal_batch_size, "internal_batch_size")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise TypeError(f"seed must be an int or None; got {type(seed).__name__}")
        return self._attribute_cam(
            inputs,
            target,
            additional_forward_args,
            attribute_to_layer_input,
            relu_attributions,
            return_weights,
            num_permutations=num_permutations,
            show_progress=show_progress,
            seed=seed,
            internal_batch_size=internal_batch_size,
        )
