#!/usr/bin/env python3
import torch.nn.functional as F
from torch import Tensor

from captum_cams.attr._base import CamContext, GradientCamBase


class LayerGradCamElementWise(GradientCamBase):
    r"""
    Element-wise Grad-CAM: the ReLU goes on each channel's term before the sum, map
    ``sum_k relu(g_k * A_k)`` with ``g = dy_c/dA``, so negative evidence in one channel
    cannot cancel positive evidence in another.

    The weights are the gradients (positional, ``N x K x h x w``); the map is not a
    weighted sum of the activations, so ``relu(sum_k w_k A_k)`` rebuilt from
    ``return_weights`` is HiResCAM's map, not this one. With ``eigen_smooth`` the
    terms ``relu(g_k * A_k)`` are projected on their first principal direction, as
    pytorch-grad-cam does. Equal to pytorch-grad-cam's ``GradCAMElementWise`` (tested).

    Source: pytorch-grad-cam (Gildenblat et al.), ``GradCAMElementWise``; it has no
    paper of its own. https://github.com/jacobgil/pytorch-grad-cam

    Args:
        forward_func (Callable or torch.nn.Module): the model or any modification of it.
        layer (torch.nn.Module): the convolutional layer whose output ``A``
                    (``N x K x h x w``) the map is computed on.
        device_ids (list[int], optional): device ids for a model wrapped in
                    ``DataParallel``, as in Captum. Default: None.

    Examples::

        >>> net = torchvision.models.resnet18().eval()
        >>> maps = LayerGradCamElementWise(net, net.layer4).attribute(
        ...     torch.randn(2, 3, 224, 224), target=[3, 7])
        >>> maps.shape
        torch.Size([2, 1, 7, 7])
    """

    def _weights(self, context: CamContext) -> Tensor:
        assert context.gradients is not None
        return context.gradients

    @classmethod
    def _terms(cls, weights: Tensor, activations: Tensor) -> Tensor:
        return F.relu(super()._terms(weights, activations))
