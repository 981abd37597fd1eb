#!/usr/bin/env python3
from typing import Any, Dict, Literal, Optional, Tuple, Union, overload

from captum._utils.typing import TargetType
from captum.log import log_usage
from torch import Tensor

from captum_cams.attr._base import CamContext, CamOutput, GradientCamBase


class LayerGradCam(GradientCamBase):
    r"""
    Grad-CAM on the shared core: channel weights ``w_k = mean_ij dy_c/dA_k,ij`` and
    map ``sum_k w_k A_k`` (``relu(sum_k w_k A_k)`` with ``relu_attributions=True``,
    the paper's map).

    A drop-in for Captum's :class:`captum.attr.LayerGradCam`: the same name, the
    same signature and the same defaults (``relu_attributions=False``,
    ``attr_dim_summation=True``), and the same results (a float64 test proves it).
    It adds what the rest of this package needs, after Captum's arguments:
    ``return_weights``, and the predicted class as the meaning of
    ``target=None`` (where Captum needs a scalar output).

    Paper: Selvaraju et al., "Grad-CAM: Visual Explanations from Deep Networks via
    Gradient-based Localization", ICCV 2017. https://arxiv.org/abs/1610.02391

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
        >>> maps, weights = LayerGradCam(net, net.layer4).attribute(
        ...     torch.randn(2, 3, 224, 224), target=[3, 7], relu_attributions=True,
        ...     return_weights=True)
        >>> weights.shape
        torch.Size([2, 512])
    """

    def _weights(self, context: CamContext) -> Tensor:
        assert context.gradients is not None
        return context.gradients.mean(dim=(2, 3))

    @overload  # type: ignore[override]  # Captum's LayerGradCam arguments (attr_dim_summation, grad_kwargs)
    def attribute(
        self,
        inputs: Union[Tensor, Tuple[Tensor, ...]],
        target: TargetType = None,
        additional_forward_args: Any = None,
        attribute_to_layer_input: bool = False,
        relu_attributions: bool = False,
        attr_dim_summation: bool = True,
        grad_kwargs: Optional[Dict[str, Any]] = None,
        return_weights: Literal[False] = False,
        eigen_smooth: bool = False,
        aug_smooth: bool = False,
    ) -> Tensor: ...

    @overload
    def attribute(
        self,
        inputs: Union[Tensor, Tuple[Tensor, ...]],
        target: TargetType = None,
        additional_forward_args: Any = None,
        attribute_to_layer_input: bool = False,
        relu_attributions: bool = False,
        attr_dim_summation: bool = True,
        grad_kwargs: Optional[Dict[str, Any]] = None,
        *,
        return_weights: Literal[True],
        eigen_smooth: bool = False,
        aug_smooth: bool = False,
    ) -> Tuple[Tensor, Tensor]: ...

    @log_usage(part_of_slo=True)
    def attribute(
        self,
        inputs: Union[Tensor, Tuple[Tensor, ...]],
        target: TargetType = None,
        additional_forward_args: Any = None,
        attribute_to_layer_input: bool = False,
        relu_attributions: bool = False,
        attr_dim_summation: bool = True,
        grad_kwargs: Optional[Dict[str, Any]] = None,
        return_weights: bool = False,
        eigen_smooth: bool = False,
        aug_smooth: bool = False,
    ) -> CamOutput:
        r"""
        Args:
            inputs (Tensor or tuple[Tensor, ...]): the image batch ``N x C x H x W``
                        (first, when the model takes several inputs).
            target (int, tuple, list, Tensor, optional): the class per example, as in
                        Captum (a tuple is one index for every example, a list one
                        per example). ``None`` takes each example's predicted class,
                        as pytorch-grad-cam and torchcam do. Default: None.
            additional_forward_args (Any, optional): further arguments of
                        ``forward_func``, after the inputs. Default: None.
            attribute_to_layer_input (bool, optional): compute the map on the
                        layer's input instead of its output. Default: False.
            relu_attributions (bool, optional): apply ReLU to the map, as the
                        paper does. Default: False (Captum's default).
            attr_dim_summation (bool, optional): sum the weighted channels into one
                        map; False returns ``w_k A_k`` per channel,
                        ``N x K x h x w``. Default: True.
            grad_kwargs (dict, optional): keyword arguments of
                        ``torch.autograd.grad``, as in Captum. Default: None.
            return_weights (bool, optional): also return the ``N x K`` weights.
                        Default: False.
            eigen_smooth (bool, optional): pytorch-grad-cam's ``eigen_smooth``: the
                        first-principal-component projection of the terms ``w_k A_k``
                        instead of their sum. Default: False.
            aug_smooth (bool, optional): pytorch-grad-cam's ``aug_smooth``: the mean
                        of the min-max normalised maps of six augmented inputs,
                        flipped back. Default: False.

        Returns:
            *Tensor* or (*Tensor*, *Tensor*): the maps ``N x 1 x h x w`` at layer
            resolution (``N x K x h x w`` without ``attr_dim_summation``), and the
            weights when ``return_weights`` is set.

        Examples::

            >>> cam = LayerGradCam(net, net.layer4)
            >>> maps = cam.attribute(images, target=labels, relu_attributions=True)
        """
        return self._attribute_cam(
            inputs,
            target,
            additional_forward_args,
            attribute_to_layer_input,
            relu_attributions,
            return_weights,
            attr_dim_summation=attr_dim_summation,
            grad_kwargs=grad_kwargs,
            eigen_smooth=eigen_smooth,
            aug_smooth=aug_smooth,
        )
