#!/usr/bin/env python3
from torch import Tensor

from captum_cams.attr._base import CamContext, GradientCamBase


class LayerGradCam(GradientCamBase):
    r"""
    Grad-CAM on the shared core: channel weights ``w_k = mean_ij dy_c/dA_k,ij`` and
    map ``relu(sum_k w_k A_k)``.

    It equals Captum's :class:`captum.attr.LayerGradCam` with
    ``relu_attributions=True`` (a test proves it) and adds what the rest of this
    package needs: ``return_weights`` and the predicted class as the default
    target. Use Captum's class where those are not needed.

    Paper: Selvaraju et al., "Grad-CAM: Visual Explanations from Deep Networks via
    Gradient-based Localization", ICCV 2017. https://arxiv.org/abs/1610.02391

    Args:
        forward_func (Callable or torch.nn.Module): the model or any modification of it.
        layer (torch.nn.Module): the convolutional layer whose output ``A``
                    (``N x K x h x w``) the map is computed on.
        device_ids (list[int], optional): device ids for a model wrapped in
                    ``DataParallel``, as in Captum. Default: None.

    Examples::

        >>> net = torchvision.models.resnet18().eval()
        >>> maps, weights = LayerGradCam(net, net.layer4).attribute(
        ...     torch.randn(2, 3, 224, 224), target=[3, 7], return_weights=True)
        >>> weights.shape
        torch.Size([2, 512])
    """

    def _weights(self, context: CamContext) -> Tensor:
        assert context.gradients is not None
        return context.gradients.mean(dim=(2, 3))
