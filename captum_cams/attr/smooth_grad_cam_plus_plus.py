#!/usr/bin/env python3
from typing import Any, Callable, List, Literal, Optional, Tuple, Union, overload

import torch
import torch.nn.functional as F
from captum._utils.typing import TargetType
from captum.log import log_usage
from torch import Tensor
from torch.nn import Module

from captum_cams._utils.batching import add_to_progress
from captum_cams._utils.guards import check_positive_int
from captum_cams._utils.seeding import check_seed, seeded_generator
from captum_cams.attr._base import CamContext, CamOutput, GradientCamBase
from captum_cams.attr._channel_masks import check_stdevs
from captum_cams.attr._reshape import ReshapeTransform


class LayerSmoothGradCamPlusPlus(GradientCamBase):
    r"""
    Smooth Grad-CAM++: Grad-CAM++ whose gradient terms are averaged over noisy copies
    of the input. With ``g_s = dy_c/dA`` at ``x + delta_s`` (``delta_s ~ N(0,
    stdevs^2)`` per input element, ``s = 1..num_samples``) and ``A`` the activations of
    the clean input,
    ``a_ij = mean_s g_s^2 / (2 mean_s g_s^2 + sum_ab A_ab mean_s g_s^3 + eps)``
    (``a_ij = 0`` where every ``g_s`` is 0), ``w_k = sum_ij relu(mean_s g_s) a_ij``;
    map ``relu(sum_k w_k A_k)`` — the paper's averages of the first, second and third
    derivative terms in Grad-CAM++'s formula.

    torchcam's ``SmoothGradCAMpp`` differs in three places: its denominator sums
    ``A_ab · g^3_ab`` over the positions (Grad-CAM++ multiplies ``sum_ab A_ab`` by the
    third-order term at ``ij``); its ``relu(g)`` is the last noisy sample's gradient,
    not the mean; and its map weights the last noisy input's activations (its hooks
    stay on during the noisy passes), not the clean input's. The weights coincide
    where ``g`` is constant over the positions and (for ``relu(g)``) with one sample:
    equal to torchcam's weights there, with the same noise draws (tested; the noise
    comes from a generator of its own seeded with ``seed``, one ``N x C x H x W``
    tensor per sample, torchcam's order).
    ``num_samples`` forward and backward passes of the noisy batch, one forward of the
    clean batch.

    Paper: Omeiza et al., "Smooth Grad-CAM++: An Enhanced Inference Level Visualization
    Technique for Deep Convolutional Neural Network Models", 2019.
    https://arxiv.org/abs/1908.01224

    Args:
        forward_func (Callable or torch.nn.Module): the model or any modification of it.
        layer (torch.nn.Module): the convolutional layer whose output ``A``
                    (``N x K x h x w``) the map is computed on.
        device_ids (list[int], optional): device ids for a model wrapped in
                    ``DataParallel``, as in Captum. Default: None.
        eps (float, optional): the stabiliser of the ``a_ij`` denominator.
                    Default: ``1e-8`` (torchcam's).
        reshape_transform (Callable, optional): turns the layer's output into
                    ``N x K x h x w`` (pytorch-grad-cam's argument); the gradients of
                    every noisy pass are reshaped the same way. Default: None

    Examples::

        >>> net = torchvision.models.resnet18().eval()
        >>> maps = LayerSmoothGradCamPlusPlus(net, net.layer4).attribute(
        ...     torch.randn(2, 3, 224, 224), target=[3, 7], num_samples=8)
    """

    # the clean pass only needs A; every gradient comes from the noisy passes
    uses_gradients = False

    def __init__(
        self,
        forward_func: Callable,
        layer: Module,
        device_ids: Union[None, List[int]] = None,
        eps: float = 1e-8,
        reshape_transform: Optional[ReshapeTransform] = None,
    ) -> None:
        super().__init__(forward_func, layer, device_ids, reshape_transform)
        self.eps = eps

    def _weights(self, context: CamContext) -> Tensor:
        images = context.inputs[0]
        activations = context.activations
        num_samples = context.options["num_samples"]
        stdevs = context.options["stdevs"]
        generator = seeded_generator(images.device, context.options["seed"])
        first = torch.zeros_like(activations)
        second = torch.zeros_like(activations)
        third = torch.zeros_like(activations)
        add_to_progress(total=num_samples * images.shape[0])
        for _ in range(num_samples):
            noise = torch.randn(
                images.shape, generator=generator, dtype=images.dtype, device=images.device
            )
            noisy = self._capture(
                (images + stdevs * noise, *context.inputs[1:]),
                context.target,
                context.additional_forward_args,
                context.attribute_to_layer_input,
                with_gradients=True,
            )
            assert noisy.gradients is not None
            first += noisy.gradients
            second += noisy.gradients.pow(2)
            third += noisy.gradients.pow(3)
            add_to_progress(done=images.shape[0])
        first, second, third = first / num_samples, second / num_samples, third / num_samples
        activation_sums = activations.sum(dim=(2, 3), keepdim=True)
        alpha = second / (2 * second + activation_sums * third + self.eps)
        alpha = torch.where(second != 0, alpha, torch.zeros_like(alpha))
        return (F.relu(first) * alpha).sum(dim=(2, 3))

    @overload
    def attribute(
        self,
        inputs: Union[Tensor, Tuple[Tensor, ...]],
        target: TargetType = None,
        additional_forward_args: Any = None,
        attribute_to_layer_input: bool = False,
        relu_attributions: bool = True,
        return_weights: Literal[False] = False,
        eigen_smooth: bool = False,
        aug_smooth: bool = False,
        num_samples: int = 4,
        stdevs: float = 0.3,
        seed: Optional[int] = 0,
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
        eigen_smooth: bool = False,
        aug_smooth: bool = False,
        num_samples: int = 4,
        stdevs: float = 0.3,
        seed: Optional[int] = 0,
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
        eigen_smooth: bool = False,
        aug_smooth: bool = False,
        num_samples: int = 4,
        stdevs: float = 0.3,
        seed: Optional[int] = 0,
        show_progress: bool = False,
    ) -> CamOutput:
        r"""
        Args:
            inputs (Tensor or tuple[Tensor, ...]): the image batch ``N x C x H x W``
                        (first, when the model takes several inputs; only it is
                        made noisy).
            target (int, list[int], Tensor, optional): the class per example, as in
                        Captum. ``None`` takes each example's predicted class (on the
                        clean input). Default: None.
            additional_forward_args (Any, optional): further arguments of
                        ``forward_func``, after the inputs. Default: None.
            attribute_to_layer_input (bool, optional): use the layer's input instead
                        of its output. Default: False.
            relu_attributions (bool, optional): apply ReLU to the map. Default: True.
            return_weights (bool, optional): also return the ``N x K`` weights.
                        Default: False.
            eigen_smooth (bool, optional): pytorch-grad-cam's ``eigen_smooth``.
                        Default: False.
            aug_smooth (bool, optional): pytorch-grad-cam's ``aug_smooth``.
                        Default: False.
            num_samples (int, optional): noisy copies of the input. Default: 4
                        (torchcam's).
            stdevs (float, optional): the noise's standard deviation, in the input's
                        units. Default: 0.3 (torchcam's).
            seed (int, optional): seed of the noise's own generator; ``None`` draws a
                        fresh seed. Default: 0.
            show_progress (bool, optional): a progress bar over the noisy passes
                        (rows: images × samples). Default: False.

        Returns:
            *Tensor* or (*Tensor*, *Tensor*): the maps ``N x 1 x h x w`` at layer
            resolution, and the weights when ``return_weights`` is set.

        Examples::

            >>> cam = LayerSmoothGradCamPlusPlus(net, net.layer4)
            >>> maps = cam.attribute(images, target=labels, num_samples=16, stdevs=0.2)
        """
        check_positive_int(num_samples, "num_samples", allow_none=False)
        check_seed(seed)
        return self._attribute_cam(
            inputs,
            target,
            additional_forward_args,
            attribute_to_layer_input,
            relu_attributions,
            return_weights,
            eigen_smooth=eigen_smooth,
            aug_smooth=aug_smooth,
            show_progress=show_progress,
            num_samples=num_samples,
            stdevs=check_stdevs(stdevs),
            seed=seed,
        )
