#!/usr/bin/env python3
from typing import Callable, List, Optional, Union

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn import Module

from captum_cams.attr._base import CamContext, GradientCamBase
from captum_cams.attr._reshape import ReshapeTransform


class LayerGradCamPlusPlus(GradientCamBase):
    r"""
    Grad-CAM++: channel weights from positive gradients weighted by
    ``a_ij = g^2 / (2 g^2 + sum_ab A_ab g^3 + eps)`` (``a_ij = 0`` where ``g = 0``),
    ``w_k = sum_ij relu(g_ij) a_ij``; map ``relu(sum_k w_k A_k)``.

    Equal to pytorch-grad-cam's ``GradCAMPlusPlus`` (tested to 1e-4).

    Paper: Chattopadhay et al., "Grad-CAM++: Generalized Gradient-based Visual
    Explanations for Deep Convolutional Networks", WACV 2018.
    https://arxiv.org/abs/1710.11063

    Args:
        forward_func (Callable or torch.nn.Module): the model or any modification of it.
        layer (torch.nn.Module): the convolutional layer whose output ``A``
                    (``N x K x h x w``) the map is computed on.
        device_ids (list[int], optional): device ids for a model wrapped in
                    ``DataParallel``, as in Captum. Default: None.
        eps (float, optional): the stabiliser of the ``a_ij`` denominator.
                    Default: ``1e-6`` (pytorch-grad-cam's).
        reshape_transform (Callable, optional): turns the layer's output into
                    ``N x K x h x w`` (pytorch-grad-cam's argument), applied to the
                    activations and to their gradient, e.g.
                    :func:`~captum_cams.vit_reshape_transform` for a vision
                    transformer's tokens. Default: None.

    Examples::

        >>> net = torchvision.models.resnet18().eval()
        >>> maps = LayerGradCamPlusPlus(net, net.layer4).attribute(
        ...     torch.randn(2, 3, 224, 224), target=[3, 7])
    """

    def __init__(
        self,
        forward_func: Callable,
        layer: Module,
        device_ids: Union[None, List[int]] = None,
        eps: float = 1e-6,
        reshape_transform: Optional[ReshapeTransform] = None,
    ) -> None:
        super().__init__(forward_func, layer, device_ids, reshape_transform)
        self.eps = eps

    def _weights(self, context: CamContext) -> Tensor:
        gradients, activations = context.gradients, context.activations
        assert gradients is not None
        squared = gradients.pow(2)
        activation_sums = activations.sum(dim=(2, 3), keepdim=True)
        alpha = squared / (2 * squared + activation_sums * squared * gradients + self.eps)
        alpha = torch.where(gradients != 0, alpha, torch.zeros_like(alpha))
        return (F.relu(gradients) * alpha).sum(dim=(2, 3))
