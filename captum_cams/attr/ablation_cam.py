#!/usr/bin/env python3
from typing import Any, Optional, Tuple, Union

import torch
from captum.log import log_usage
from torch import Tensor

from captum_cams._utils.guards import TargetLike, check_positive_int
from captum_cams.attr._base import CamContext, CamOutput, HeadCamBase, batched_target_scores


class LayerAblationCam(HeadCamBase):
    r"""
    Ablation-CAM: channel weights ``w_k = (y_c - y_c^(k)) / y_c`` where
    ``y_c^(k)`` is the target logit with channel ``k`` of the layer's output set to
    zero; map ``relu(sum_k w_k A_k)``.

    Only the model's head is re-evaluated, for all ``N x K`` ablations in chunks of
    ``internal_batch_size`` rows, never the whole network per channel. Equal to
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

    Examples::

        >>> net = torchvision.models.resnet18().eval()
        >>> maps = LayerAblationCam(net, net.layer4).attribute(
        ...     torch.randn(2, 3, 224, 224), target=[3, 7])
    """

    def _weights(self, context: CamContext) -> Tensor:
        head = self._verified_head(context)
        activations = context.activations
        num_examples, num_channels = activations.shape[:2]
        device = activations.device
        row_example = torch.arange(num_examples, device=device).repeat_interleave(num_channels)
        row_channel = torch.arange(num_channels, device=device).repeat(num_examples)

        def ablated_outputs(rows: Tensor) -> Tensor:
            examples = row_example[rows]
            ablated = activations[examples]  # advanced indexing copies
            ablated[torch.arange(rows.shape[0], device=device), row_channel[rows]] = 0
            return head(ablated, examples)

        ablated_scores = batched_target_scores(
            ablated_outputs,
            row_example,
            context.target,
            context.options["internal_batch_size"],
        ).view(num_examples, num_channels)
        original = context.target_scores[:, None].to(ablated_scores.dtype)
        return (original - ablated_scores) / original

    @log_usage()
    def attribute(
        self,
        inputs: Union[Tensor, Tuple[Tensor, ...]],
        target: TargetLike = None,
        additional_forward_args: Any = None,
        attribute_to_layer_input: bool = False,
        relu_attributions: bool = True,
        return_weights: bool = False,
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
            internal_batch_size (int, optional): ablated activations evaluated by
                        the head at once; ``None`` evaluates all ``N x K`` at once.
                        Default: 256.

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
            internal_batch_size=internal_batch_size,
        )
