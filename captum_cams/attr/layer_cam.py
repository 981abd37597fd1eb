#!/usr/bin/env python3
import torch.nn.functional as F
from torch import Tensor

from captum_cams.attr._base import CamContext, GradientCamBase


class LayerCam(GradientCamBase):
    r"""
    Layer-CAM: per-position weights ``relu(g)``; map ``relu(sum_k relu(g_k) * A_k)``.

    Its weights are positional (``N x K x h x w``), so ``return_weights=True``
    returns them in that shape. Equal to pytorch-grad-cam's ``LayerCAM``
    (tested to 1e-4).

    Paper: Jiang et al., "LayerCAM: Exploring Hierarchical Class Activation Maps for
    Localization", IEEE TIP 2021. https://doi.org/10.1109/TIP.2021.3089943

    Args:
        forward_func (Callable or torch.nn.Module): the model or any modification of it.
        layer (torch.nn.Module): the convolutional layer whose output ``A``
                    (``N x K x h x w``) the map is computed on.
        device_ids (list[int], optional): device ids for a model wrapped in
                    ``DataParallel``, as in Captum. Default: None.
        reshape_transform (Callable, optional): turns the layer's output into
                    ``N x K x h x w`` (pytorch-grad-cam's argument), applied to the
                    activations and to their gradient, e.g.
                    :func:`~captum_cams.vit_reshape_transform` for a vision
                    transformer's tokens. Default: None.

    Examples::

        >>> net = torchvision.models.resnet18().eval()
        >>> maps = LayerCam(net, net.layer3).attribute(
        ...     torch.randn(2, 3, 224, 224), target=[3, 7])
        >>> maps.shape
        torch.Size([2, 1, 14, 14])
    """

    def _weights(self, context: CamContext) -> Tensor:
        assert context.gradients is not None
        return F.relu(context.gradients)
