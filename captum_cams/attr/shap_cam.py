#!/usr/bin/env python3
from typing import Any, Callable, Literal, Optional, Tuple, Union, overload

import torch
from captum._utils.typing import TargetType
from captum.log import log_usage
from torch import Tensor

from captum_cams._utils.batching import multiplied_rows
from captum_cams._utils.guards import check_positive_int
from captum_cams.attr._base import (
    CamContext,
    CamOutput,
    HeadCamBase,
    batched_target_scores,
    head_model,
)


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

    Equal to Captum's ``ShapleyValueSampling`` on the head with one feature per
    channel and baseline 0, given the same orders (tested), but kept in the
    activations' dtype: Captum accumulates in float32.

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
        return head(multiplied_rows(activations, examples, present[:, :, None, None]), examples)

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
    channel, baseline 0, given the same orders (tested in float64;
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
        # The own loop rather than Captum's ShapleyValueSampling (tested equal for the
        # same orders): Captum accumulates in float32, which would break float64
        # completeness (sum = F_c(A) - F_c(0) to 1e-12), and it adds one channel per
        # Python step where this loop evaluates whole chunks of prefixes
        # (benchmarks/captum_reuse_speed.py compares the two).
        return sampled_channel_shapley(
            self._verified_head(context),
            context.activations,
            context.target,
            orders,
            context.options["internal_batch_size"],
        )

    @overload
    def attribute(
        self,
        inputs: Union[Tensor, Tuple[Tensor, ...]],
        target: TargetType = None,
        additional_forward_args: Any = None,
        attribute_to_layer_input: bool = False,
        relu_attributions: bool = True,
        return_weights: Literal[False] = False,
        num_permutations: int = 10,
        seed: Optional[int] = 0,
        internal_batch_size: Optional[int] = None,
        show_progress: bool = False,
    ) -> Tensor: ...

    @overload
    def attribute(
        self,
        inputs: Union[Tensor, Tuple[Tensor, ...]],
        target: TargetType = None,
        additional_forward_args: Any = None,
        attribute_to_layer_input: bool = False,
        relu_attributions: bool = True,
        *,
        return_weights: Literal[True],
        num_permutations: int = 10,
        seed: Optional[int] = 0,
        internal_batch_size: Optional[int] = None,
        show_progress: bool = False,
    ) -> Tuple[Tensor, Tensor]: ...

    @log_usage(part_of_slo=True)
    def attribute(
        self,
        inputs: Union[Tensor, Tuple[Tensor, ...]],
        target: TargetType = None,
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
