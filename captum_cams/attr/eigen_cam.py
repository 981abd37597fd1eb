#!/usr/bin/env python3
from typing import Any, Literal, Tuple, Union, overload

from captum._utils.typing import TargetType
from captum.log import log_usage
from torch import Tensor

from captum_cams.attr._base import CamBase, CamContext, CamOutput
from captum_cams.attr._smoothing import principal_component


class LayerEigenCam(CamBase):
    r"""
    Eigen-CAM: the projection of the layer's activations on their first principal
    component. Per example the ``K x h x w`` activations are read as ``h·w`` rows of
    ``K`` channels, centred over the rows, and projected on the first right-singular
    vector ``v``; the map is ``relu(sum_k v_k (A_k - mean(A_k)))``. No gradient and no
    class: the map is the same for every ``target`` (it is accepted, and checked, so
    that Eigen-CAM goes wherever the other methods go).

    A singular vector's sign is arbitrary (numpy's LAPACK and torch's MKL choose
    differently for the same matrix, so pytorch-grad-cam's map can be the negated one
    from one machine to the next); ``v`` is negated here when the projection's largest
    magnitude is negative, pytorch-grad-cam's ``get_2d_projection_with_sign_correction``
    rule. Tested equal to that projection, and to pytorch-grad-cam's ``EigenCAM``
    wherever its LAPACK sign already satisfies the rule. ``return_weights`` returns
    ``v`` (``N x K``). A layer of one position (``1 x 1``) has nothing to project and
    is refused.

    Paper: Muhammad & Yeasin, "Eigen-CAM: Class Activation Map using Principal
    Components", IJCNN 2020. https://arxiv.org/abs/2008.00299

    Args:
        forward_func (Callable or torch.nn.Module): the model or any modification of it.
        layer (torch.nn.Module): the convolutional layer whose output ``A``
                    (``N x K x h x w``) the map is computed on.
        device_ids (list[int], optional): device ids for a model wrapped in
                    ``DataParallel``, as in Captum. Default: None.

    Examples::

        >>> net = torchvision.models.resnet18().eval()
        >>> maps = LayerEigenCam(net, net.layer4).attribute(torch.randn(2, 3, 224, 224))
        >>> maps.shape
        torch.Size([2, 1, 7, 7])
    """

    uses_gradients = False

    def _weights(self, context: CamContext) -> Tensor:
        return principal_component(context.activations)[1]

    @classmethod
    def _terms(cls, weights: Tensor, activations: Tensor) -> Tensor:
        centred = activations - activations.mean(dim=(2, 3), keepdim=True)
        return super()._terms(weights, centred)

    @overload
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
            target (int, list[int], Tensor, optional): checked, but without effect on
                        the map (Eigen-CAM is class-agnostic). Default: None.
            additional_forward_args (Any, optional): further arguments of
                        ``forward_func``, after the inputs. Default: None.
            attribute_to_layer_input (bool, optional): project the layer's input
                        instead of its output. Default: False.
            relu_attributions (bool, optional): apply ReLU to the projection, as the
                        paper and pytorch-grad-cam do. Default: True.
            return_weights (bool, optional): also return the principal directions
                        ``v`` (``N x K``). Default: False.
            aug_smooth (bool, optional): pytorch-grad-cam's ``aug_smooth``: the mean
                        of the min-max normalised maps of six augmented inputs,
                        flipped back. Default: False.

        Returns:
            *Tensor* or (*Tensor*, *Tensor*): the maps ``N x 1 x h x w`` at layer
            resolution, and ``v`` when ``return_weights`` is set.

        Examples::

            >>> maps = LayerEigenCam(net, net.layer4).attribute(images)
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
