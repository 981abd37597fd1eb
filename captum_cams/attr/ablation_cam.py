#!/usr/bin/env python3
from typing import Any, Callable, Literal, Optional, Tuple, Union, overload

import torch
from captum._utils.typing import TargetType
from captum.log import log_usage
from torch import Tensor

from captum_cams._utils.batching import select_rows
from captum_cams._utils.guards import check_positive_int
from captum_cams.attr._base import (
    CamContext,
    CamOutput,
    HeadCamBase,
    batched_target_scores,
    head_model,
)


def ablated_target_scores(
    head: Callable[[Tensor, Tensor], Tensor],
    activations: Tensor,
    target: Tensor,
    internal_batch_size: Optional[int] = None,
) -> Tensor:
    r"""
    ``y_c^(k)``, the target output with channel ``k`` of the activations set to 0,
    for every example and channel: the package's own loop over the ``N x K``
    ablated copies (one copy and one zeroed channel per row), in chunks of
    ``internal_batch_size`` rows.

    ``y_c`` minus these equals Captum's ``FeatureAblation`` on the head with one
    feature per channel and baseline 0 (tested in float64).

    Args:
        head (Callable): maps ``M x K x h x w`` activations and the ``(M,)`` example
                    index of each row to ``M x C`` outputs (a :class:`LayerHead`).
        activations (Tensor): ``N x K x h x w`` layer activations.
        target (Tensor): ``(N,)`` class index per example.
        internal_batch_size (int, optional): ablated copies evaluated by the head at
                    once; ``None``: as many as the pass budget allows
                    (:func:`~captum_cams.get_pass_budget`). Default: None.

    Returns:
        *Tensor*: ``N x K`` target outputs of the ablated activations.

    Examples::

        >>> ablated = ablated_target_scores(head, activations, torch.tensor([3, 7]))
    """
    num_examples, num_channels = activations.shape[:2]
    device = activations.device
    row_example = torch.arange(num_examples, device=device).repeat_interleave(num_channels)
    row_channel = torch.arange(num_channels, device=device).repeat(num_examples)

    def ablated_outputs(rows: Tensor) -> Tensor:
        examples = row_example[rows]
        ablated = select_rows(activations, examples)
        ablated[torch.arange(rows.shape[0], device=device), row_channel[rows]] = 0
        return head(ablated, examples)

    scores = batched_target_scores(
        ablated_outputs,
        row_example,
        target,
        internal_batch_size,
        row=activations[0],
        model=head_model(head),
        head=True,
    )
    return scores.view(num_examples, num_channels)


class LayerAblationCam(HeadCamBase):
    r"""
    Ablation-CAM: channel weights ``w_k = (y_c - y_c^(k)) / y_c`` where
    ``y_c^(k)`` is the target logit with channel ``k`` of the layer's output set to
    zero; map ``relu(sum_k w_k A_k)``.

    Only the model's head is re-evaluated, for all ``N x K`` ablations in chunks of
    ``internal_batch_size`` rows (by default as many as the pass budget allows,
    :func:`~captum_cams.get_pass_budget`), never the whole network per channel. The
    differences ``y_c - y_c^(k)`` equal Captum's ``FeatureAblation`` on the head with
    one feature per channel and baseline 0 (tested in float64). Equal to
    pytorch-grad-cam's ``AblationCAM`` (tested to 1e-4) for layers whose output is
    non-negative (where that library also ablates to zero).

    Paper: Desai & Ramaswamy, "Ablation-CAM: Visual Explanations for Deep
    Convolutional Network via Gradient-free Localization", WACV 2020.
    https://openaccess.thecvf.com/content_WACV_2020/html/Desai_Ablation-CAM_Visual_Explanations_for_Deep_Convolutional_Network_via_Gradient-free_Localization_WACV_2020_paper.html

    Args:
        forward_func (Callable or torch.nn.Module): the model or any modification of it.
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
        >>> maps = LayerAblationCam(net, net.layer4).attribute(
        ...     torch.randn(2, 3, 224, 224), target=[3, 7])
    """

    def _weights(self, context: CamContext) -> Tensor:
        # The own loop rather than Captum's FeatureAblation (tested equal): one head
        # evaluation per chunk of ablated copies, where FeatureAblation makes several
        # passes per copy (benchmarks/captum_reuse_speed.py compares the two).
        ablated = ablated_target_scores(
            self._verified_head(context),
            context.activations,
            context.target,
            context.options["internal_batch_size"],
        )
        original = context.target_scores[:, None].to(ablated.dtype)
        return (original - ablated) / original

    @overload
    def attribute(
        self,
        inputs: Union[Tensor, Tuple[Tensor, ...]],
        target: TargetType = None,
        additional_forward_args: Any = None,
        attribute_to_layer_input: bool = False,
        relu_attributions: bool = True,
        return_weights: Literal[False] = False,
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
            internal_batch_size (int, optional): ablated activations evaluated by
                        the head at once; ``None``: as many as the pass budget
                        allows (:func:`~captum_cams.get_pass_budget`). Default: None.
            show_progress (bool, optional): a progress bar over the ablated
                        copies. Default: False.

        Returns:
            *Tensor* or (*Tensor*, *Tensor*): the maps ``N x 1 x h x w`` at layer
            resolution, and the weights when ``return_weights`` is set.

        Examples::

            >>> maps, weights = LayerAblationCam(net, net.layer4).attribute(
            ...     images, target=labels, return_weights=True)
        """
        check_positive_int(internal_batch_size, "internal_batch_size")
        return self._attribute_cam(
            inputs,
            target,
            additional_forward_args,
            attribute_to_layer_input,
            relu_attributions,
            return_weights,
            show_progress=show_progress,
            internal_batch_size=internal_batch_size,
        )
