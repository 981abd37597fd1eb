#!/usr/bin/env python3
import math
from typing import Any, Callable, Optional, Tuple, Union

import torch
from captum.log import log_usage
from torch import Tensor

from captum_cams._utils.guards import TargetLike, check_positive_int
from captum_cams.attr._base import (
    CamContext,
    CamOutput,
    HeadCamBase,
    batched_target_scores,
)

#: Above this many channels the exact enumeration (``2^K`` head evaluations per
#: example) is refused.
MAX_EXACT_CHANNELS: int = 16


def exact_channel_shapley(
    head: Callable[[Tensor], Tensor],
    activations: Tensor,
    target: Tensor,
    internal_batch_size: Optional[int] = 1024,
) -> Tensor:
    r"""
    The exact Shapley values of the channels of ``activations`` for the target
    outputs of ``head``, by enumerating all ``2^K`` channel subsets (absent channels
    zeroed): the reference that SHAP-CAM estimates and LIFT-CAM approximates.

    Args:
        head (Callable): maps ``M x K x h x w`` activations to ``M x C`` outputs.
        activations (Tensor): ``N x K x h x w`` layer activations, ``K <= 16``.
        target (Tensor): ``(N,)`` class index per example.
        internal_batch_size (int, optional): subsets evaluated at once; ``None``
                    evaluates all at once. Default: 1024.

    Returns:
        *Tensor*: ``N x K`` Shapley values; each row sums to
        ``head(A)_c - head(0)_c``.

    Examples::

        >>> phi = exact_channel_shapley(head, activations, torch.tensor([3, 7]))
    """
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
        subset_outputs, row_example, target.to(device), internal_batch_size
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


class LayerShapCam(HeadCamBase):
    r"""
    SHAP-CAM_|Pi|: channel weights ``alpha_k`` = the Shapley values of the layer's
    channels for the target logit, estimated by permutation sampling; map
    ``relu(sum_k alpha_k A_k)``.

    For each of ``num_permutations`` random orders of the ``K`` channels, channels
    are switched on one after the other (absent channels are zero at the layer) and
    channel ``k`` is credited with the change of the target logit when it joins,
    ``F_c(h(a')) - F_c(h(a' \ k))``; ``alpha_k`` is the average over the orders. For
    every single order the credits sum to ``F_c(A) - F_c(0)`` exactly (they
    telescope), and the estimate converges to the exact Shapley values like
    ``1/sqrt(num_permutations)``.

    Only the model's head is evaluated: ``N x (num_permutations x (K - 1) + 2)``
    rows in chunks of ``internal_batch_size``. Permutations come from an own
    ``torch.Generator`` seeded with ``seed``; the global random state is untouched.

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

    Examples::

        >>> net = torchvision.models.resnet18().eval()
        >>> shap = LayerShapCam(net, net.layer4)
        >>> maps, alpha = shap.attribute(torch.randn(2, 3, 224, 224), target=[3, 7],
        ...                              num_permutations=20, return_weights=True)
    """

    def _weights(self, context: CamContext) -> Tensor:
        head = self._verified_head(context)
        activations = context.activations
        num_examples, num_channels = activations.shape[:2]
        num_permutations: int = context.options["num_permutations"]
        seed: Optional[int] = context.options["seed"]
        device = activations.device

        generator = torch.Generator(device="cpu")
        if seed is None:
            generator.seed()  # fresh entropy, not the global generator's
        else:
            generator.manual_seed(seed)
        orders = torch.rand(
            num_examples, num_permutations, num_channels, generator=generator
        ).argsort(dim=-1)
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
            masked = activations[examples] * present[:, :, None, None].to(activations.dtype)
            return head(masked, examples)

        scores = batched_target_scores(
            prefix_outputs, row_example, context.target, context.options["internal_batch_size"]
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
        internal_batch_size: Optional[int] = 256,
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
                        head at once; ``None`` evaluates all rows at once.
                        Default: 256.

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
            seed=seed,
            internal_batch_size=internal_batch_size,
        )
