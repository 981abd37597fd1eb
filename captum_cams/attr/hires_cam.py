#!/usr/bin/env python3
from torch import Tensor

from captum_cams.attr._base import CamContext, GradientCamBase


class LayerHiResCam(GradientCamBase):
    r"""
    HiResCAM: the gradient multiplies the activations element-wise before the channel
    sum, without Grad-CAM's spatial averaging: map ``relu(sum_k g_k * A_k)`` with
    ``g = dy_c/dA``.

    Its weights are positional (``N x K x h x w``, the gradients themselves), so
    ``return_weights=True`` returns them in that shape. Where the model after the layer
    is a global average pool and a linear layer, the map is the layer's contribution to
    the logit, position by position (the paper's faithfulness argument). Equal to
    pytorch-grad-cam's ``HiResCAM`` (tested).

    Paper: Draelos & Carin, "Use HiResCAM instead of Grad-CAM for faithful explanations
    of convolutional neural networks", 2020. https://arxiv.org/abs/2011.08891

    Args:
        forward_func (Callable or torch.nn.Module): the model or any modification of it.
        layer (torch.nn.Module): the convolutional layer whose output ``A``
                    (``N x K x h x w``) the map is computed on.
        device_ids (list[int], optional): device ids for a model wrapped in
                    ``DataParallel``, as in Captum. Default: None.

    Examples::

        >>> net = torchvision.models.resnet18().eval()
        >>> maps = LayerHiResCam(net, net.layer4).attribute(
        ...     torch.randn(2, 3, 224, 224), target=[3, 7])
        >>> maps.shape
        torch.Size([2, 1, 7, 7])
    """

    def _weights(self, context: CamContext) -> Tensor:
        assert context.gradients is not None
        return context.gradients
