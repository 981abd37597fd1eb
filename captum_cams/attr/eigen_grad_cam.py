#!/usr/bin/env python3
from typing import Any, Literal, Tuple, Union, overload

from captum._utils.typing import TargetType
from captum.log import log_usage
from torch import Tensor

from captum_cams.attr._base import CamContext, CamOutput, GradientCamBase


class LayerEigenGradCam(GradientCamBase):
    r"""
    Eigen-Grad-CAM: Eigen-CAM's projection applied to gradient times activation. Per
    example the terms ``g_k * A_k`` (``g = dy_c/dA``) are read as ``h·w`` rows of ``K``
    channels, centred over the rows and projected on their first right-singular
    vector; the map is the ReLU of that projection. Class-specific through ``g``.

    The singular vector's sign follows the rule of :class:`LayerEigenCam` (the
    projection's largest magnitude positive). The weights are the gradients
    (positional, ``N x K x h x w``); the map is their terms' projection, not
    ``relu(sum_k g_k A_k)``. Tested equal to pytorch-grad-cam's ``EigenGradCAM`` up to
    that sign.

    Paper: the projection of Muhammad & Yeasin, "Eigen-CAM: Class Activation Map using
    Principal Components", IJCNN 2020 (https://arxiv.org/abs/2008.00299), on
    gradient x activation as pytorch-grad-cam's ``EigenGradCAM`` defines it.

    Args:
        forward_func (Callable or torch.nn.Module): the model or any modification of it.
        layer (torch.nn.Module): the convolutional layer whose output ``A``
                    (``N x K x h x w``) the map is computed on.
        device_ids (list[int], optional): device ids for a model wrapped in
                    ``DataParallel``, as in Captum. Default: None.

    Examples::

        >>> net = torchvision.models.resnet18().eval()
        >>> maps = LayerEigenGradCam(net, net.layer3).attribute(
        ...     torch.randn(2, 3, 224, 224), target=[3, 7])
        >>> maps.shape
        torch.Size([2, 1, 14, 14])
    """

    def _weights(self, context: CamContext) -> Tensor:
        assert context.gradients is not None
        return context.gradients

    @classmethod
    def _map(
        cls,
        weights: Tensor,
        activations: Tensor,
        relu_attributions: bool,
        attr_dim_summation: bool = True,
        eigen_smooth: bool = True,
    ) -> Tensor:
        # the projection is the method, not an option
        return super()._map(weights, activations, relu_attributions, attr_dim_summation, True)

    @overload  # type: ignore[override]  # no eigen_smooth: the map is already a projection
    def attribute(
        self,
        inputs: Union[Tensor, Tuple[Tensor, ...]],
        target: TargetType = None,
        additional_forward_args: Any = None,
        attribute_to_layer_input: bool = False,
        relu_attributions: bool = True,
        return_weights: Literal[False] = False,
        aug_smooth: bool = False,
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
        aug_smooth: bool = False,
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
        aug_smooth: bool = False,
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
            attribute_to_layer_input (bool, optional): use the layer's input instead
                        of its output. Default: False.
            relu_attributions (bool, optional): apply ReLU to the projection, as
                        pytorch-grad-cam does. Default: True.
            return_weights (bool, optional): also return the gradients
                        (``N x K x h x w``). Default: False.
            aug_smooth (bool, optional): pytorch-grad-cam's ``aug_smooth``: the mean
                        of the min-max normalised maps of six augmented inputs,
                        flipped back. Default: False.

        Returns:
            *Tensor* or (*Tensor*, *Tensor*): the maps ``N x 1 x h x w`` at layer
            resolution, and the gradients when ``return_weights`` is set.

        Examples::

            >>> maps = LayerEigenGradCam(net, net.layer3).attribute(images, target=labels)
        """
        return self._attribute_cam(
            inputs,
            target,
            additional_forward_args,
            attribute_to_layer_input,
            relu_attributions,
            return_weights,
            aug_smooth=aug_smooth,
        )
