#!/usr/bin/env python3
from typing import Callable, List, Optional, Union

from torch import Tensor
from torch.nn import Module

from captum_cams.attr._base import CamContext, GradientCamBase
from captum_cams.attr._reshape import ReshapeTransform


class LayerXGradCam(GradientCamBase):
    r"""
    XGrad-CAM: channel weights ``w_k = sum_ij g_ij A_k,ij / (sum_ij A_k,ij + eps)``;
    map ``relu(sum_k w_k A_k)``.

    Equal to pytorch-grad-cam's ``XGradCAM`` (tested to 1e-4).

    Paper: Fu et al., "Axiom-based Grad-CAM: Towards Accurate Visualization and
    Explanation of CNNs", BMVC 2020. https://arxiv.org/abs/2008.02312

    Args:
        forward_func (Callable or torch.nn.Module): the model or any modification of it.
        layer (torch.nn.Module): the convolutional layer whose output ``A``
                    (``N x K x h x w``) the map is computed on.
        device_ids (list[int], optional): device ids for a model wrapped in
                    ``DataParallel``, as in Captum. Default: None.
        eps (float, optional): the stabiliser of the denominator.
                    Default: ``1e-7`` (pytorch-grad-cam's).
        reshape_transform (Callable, optional): turns the layer's output into
                    ``N x K x h x w`` (pytorch-grad-cam's argument), applied to the
                    activations and to their gradient, e.g.
                    :func:`~captum_cams.vit_reshape_transform` for a vision
                    transformer's tokens. Default: None.

    Examples::

        >>> net = torchvision.models.resnet18().eval()
        >>> maps = LayerXGradCam(net, net.layer4).attribute(
        ...     torch.randn(2, 3, 224, 224), target=[3, 7])
    """

    def __init__(
        self,
        forward_func: Callable,
        layer: Module,
        device_ids: Union[None, List[int]] = None,
        eps: float = 1e-7,
        reshape_transform: Optional[ReshapeTransform] = None,
    ) -> None:
        super().__init__(forward_func, layer, device_ids, reshape_transform)
        self.eps = eps

    def _weights(self, context: CamContext) -> Tensor:
        gradients, activations = context.gradients, context.activations
        assert gradients is not None
        activation_sums = activations.sum(dim=(2, 3), keepdim=True)
        return (gradients * activations / (activation_sums + self.eps)).sum(dim=(2, 3))
