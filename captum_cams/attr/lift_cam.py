#!/usr/bin/env python3
import warnings
from typing import Any, Callable, Dict, List, Literal, Optional, Tuple, Union, overload

import torch
from captum._utils.typing import TargetType
from captum.attr import InputXGradient
from captum.attr._utils.attribution import GradientAttribution
from captum.log import log_usage
from torch import Tensor
from torch.nn import Module

from captum_cams._utils.guards import captum_target, target_values
from captum_cams.attr._base import CamContext, CamOutput, HeadCamBase
from captum_cams.attr._deeplift_head import cached_deeplift_head, check_eval_mode
from captum_cams.attr._deeplift_rules import RescaleDeepLift
from captum_cams.attr._reshape import ReshapeTransform


class LayerLiftCam(HeadCamBase, GradientAttribution):
    r"""
    LIFT-CAM: channel weights ``alpha_k = sum_ij C(dA_k,ij -> dF_c)``, the
    DeepLIFT-Rescale contributions of the layer's neurons to the target logit,
    computed on the model's head ``F`` with the reference ``A_ref = 0`` at the layer;
    map ``relu(sum_k alpha_k A_k)``.

    The weights satisfy completeness, ``sum_k alpha_k = F_c(A) - F_c(0)``, and
    approximate the Shapley values of the channels (SHAP-CAM,
    :class:`~captum_cams.LayerShapCam`) at the cost of one DeepLIFT pass on the head
    for the whole batch.

    The head (given, or split from the model with ``torch.fx``) is rewritten once so
    that every non-linearity call site is its own out-of-place module with an exact
    Rescale rule (see :func:`~captum_cams.attr._deeplift_head.deeplift_head`), and
    Captum's ``DeepLift`` runs on it. ``ReLU6``, ``Hardswish``, ``Hardsigmoid``,
    ``SiLU`` and the other element-wise activations Captum does not list get the
    exact element-wise Rescale rule; a head with an operation that has no exact rule
    (a product of two activation-dependent tensors as in squeeze-excitation, an
    adaptive max-pool, softmax, an unknown module) is refused when the method is
    constructed — never a silent gradient fallback. When the head is affine (only
    linear layers, convolutions, batch-norm, average pooling, reshapes, dropout in
    eval mode), DeepLIFT with a zero reference equals gradient times activation, and
    the weights come from Captum's ``InputXGradient`` on the head (the quantity of
    Captum's ``LayerGradientXActivation`` at the layer, without a backward pass
    through the layers before it).

    Paper: Jung & Oh, "Towards Better Explanations of Class Activation Mapping",
    ICCV 2021. https://arxiv.org/abs/2102.05228

    Args:
        forward_func (Callable or torch.nn.Module): the model.
        layer (torch.nn.Module): the convolutional layer whose output ``A``
                    (``N x K x h x w``) the map is computed on.
        device_ids (list[int], optional): device ids for a model wrapped in
                    ``DataParallel``, as in Captum. Default: None.
        head (torch.nn.Module, optional): the part of the model from the layer's
                    output to the model's output. Default: None (split from the model
                    with ``torch.fx``). Checked once against the model. LIFT-CAM
                    needs the head as a module: a model that cannot be split needs
                    ``head=``.
        fixed_layer_norm (bool, optional): accept LayerNorm in the head by holding
                    its scale ``1/sqrt(var + eps)`` at the value on the activations
                    (the mean is still subtracted), which makes it affine; allowed
                    only where the rest of the head is affine (ConvNeXt after its
                    last stage). Completeness then holds for that affine map,
                    ``sum_k alpha_k = F~_c(A) - F~_c(0)``, which is
                    ``F_c(A) - F_c(0)`` when each LayerNorm's input at the zero
                    reference is constant over the normalised dimensions (true for
                    ConvNeXt's classifier). Default: False (LayerNorm is refused).
        reshape_transform (Callable, optional): turns the layer's output into
                    ``N x K x h x w`` (pytorch-grad-cam's argument). DeepLIFT runs on
                    the layer's real output (reference 0 over all of it) and the
                    contributions are reshaped the same way, so the transform must
                    keep every value (a permutation such as
                    :func:`~captum_cams.swin_reshape_transform`); one that drops
                    values (ViT's CLS token) is refused. Default: None

    Examples::

        >>> net = torchvision.models.resnet18().eval()
        >>> lift = LayerLiftCam(net, net.layer4[0])
        >>> maps, weights = lift.attribute(
        ...     torch.randn(2, 3, 224, 224), target=[3, 7], return_weights=True)
        >>> weights.shape
        torch.Size([2, 512])
    """

    def __init__(
        self,
        forward_func: Callable,
        layer: Module,
        device_ids: Union[None, List[int]] = None,
        head: Optional[Module] = None,
        fixed_layer_norm: bool = False,
        reshape_transform: Optional[ReshapeTransform] = None,
    ) -> None:
        if not isinstance(fixed_layer_norm, bool):
            raise TypeError(
                f"fixed_layer_norm must be a bool; got {type(fixed_layer_norm).__name__}"
            )
        HeadCamBase.__init__(self, forward_func, layer, device_ids, head, reshape_transform)
        GradientAttribution.__init__(self, forward_func)
        if self.head.module is None:
            raise ValueError(
                "LIFT-CAM needs the model's head as a module, and the model could not "
                "be split after the layer with torch.fx (skip connections around the "
                "layer, or code torch.fx cannot trace); pass head= (the part of the "
                "model from the layer's output to its output), or choose a layer with no "
                "connection around it (a whole block rather than a layer inside one)"
            )
        self.fixed_layer_norm = fixed_layer_norm
        self.deeplift_head, self.head_is_affine = cached_deeplift_head(
            self.head.module, fixed_layer_norm
        )
        # the head from the layer's input (attribute_to_layer_input=True), on first use
        self._input_deeplift_head: Optional[Tuple[Module, bool]] = None
        # The layer's activations come from a forward-only capture; both paths then
        # work on the head alone.
        self.uses_gradients = False

    def _prepared_head(self, attribute_to_layer_input: bool) -> Tuple[Module, bool]:
        r"""The rewritten head (from the layer's output or input) and whether it is affine."""
        if not attribute_to_layer_input:
            return self.deeplift_head, self.head_is_affine
        if self._input_deeplift_head is None:
            input_head = self._head_for(True).module
            assert input_head is not None
            self._input_deeplift_head = cached_deeplift_head(input_head, self.fixed_layer_norm)
        return self._input_deeplift_head

    def has_convergence_delta(self) -> bool:
        r"""LIFT-CAM's weights are complete: ``sum_k alpha_k = F_c(A) - F_c(0)``."""
        return True

    def _weights(self, context: CamContext) -> Tensor:
        deeplift_head, head_is_affine = self._prepared_head(context.attribute_to_layer_input)
        check_eval_mode(deeplift_head)
        head = self._verified_layer_head(context)
        # DeepLIFT on the layer's real output; with a reshape_transform its
        # contributions are reshaped like the activations (a permutation, checked)
        activations = (
            context.activations if context.raw_activations is None else (context.raw_activations)
        )
        if self.reshape_transform is not None:
            self._check_keeps_every_value(activations)
        inputs = activations.clone().requires_grad_()
        rows = torch.arange(activations.shape[0], device=activations.device)
        # the model's arguments the head uses after the layer, held fixed (Captum
        # repeats them for the reference half)
        extras = head._extra_arguments(rows)
        contributions = self._contributions(
            deeplift_head, head_is_affine, inputs, context.target, extras
        )
        if self.reshape_transform is not None:
            contributions = self.reshape_transform(contributions)
        weights = contributions.sum(dim=(2, 3))
        delta_out: Optional[List[Tensor]] = context.options.get("delta_out")
        if delta_out is not None:
            # DeepLIFT's summation-to-delta on the head, as Captum's LayerDeepLift
            # computes its delta: sum of the contributions - (F_c(A) - F_c(0)); the
            # end points are the prepared head's (a held LayerNorm scale included)
            with torch.no_grad():
                ends = deeplift_head(
                    torch.cat([activations, torch.zeros_like(activations)]),
                    *head._extra_arguments(torch.cat([rows, rows])),
                )
            end = target_values(ends[: len(rows)], context.target)
            start = target_values(ends[len(rows) :], context.target)
            delta_out.append(weights.sum(dim=1) - (end - start).to(weights.dtype))
        return weights

    def _check_keeps_every_value(self, raw: Tensor) -> None:
        r"""Refuses a reshape_transform that is not a permutation of the layer's output."""
        index = self._restoring_index(raw)
        if index.numel() != raw[0].numel():
            raise ValueError(
                "LIFT-CAM's DeepLIFT reference is 0 over the layer's whole output, so its "
                "reshape_transform must keep every value (as swin_reshape_transform does); "
                f"this one keeps {index.numel()} of {raw[0].numel()} per example (e.g. it "
                "drops a CLS token): pass one that keeps them all, or use LayerAblationCam "
                "or LayerShapCam, which keep the dropped values as they are"
            )

    @staticmethod
    def _contributions(
        deeplift_head: Module,
        head_is_affine: bool,
        inputs: Tensor,
        target: Tensor,
        extras: Tuple[Any, ...] = (),
    ) -> Tensor:
        r"""The DeepLIFT contributions (reference 0) of every value of the layer's output."""
        if head_is_affine:
            # DeepLIFT with a zero reference through an affine head is exactly
            # gradient x activation: Captum's InputXGradient on the head (what
            # LayerGradientXActivation computes at the layer, without re-running
            # the layers before it), summed over positions.
            # the prepared head: the same values, with any LayerNorm scale held fixed
            contributions = InputXGradient(deeplift_head).attribute(
                inputs, target=captum_target(target), additional_forward_args=extras or None
            )
            return contributions.detach()
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*hooks and attributes.*")
            contributions = RescaleDeepLift(deeplift_head).attribute(
                inputs,
                baselines=torch.zeros_like(inputs),
                target=captum_target(target),
                additional_forward_args=extras or None,
            )
        return contributions.detach()

    @overload
    def attribute(
        self,
        inputs: Union[Tensor, Tuple[Tensor, ...]],
        target: TargetType = None,
        additional_forward_args: Any = None,
        attribute_to_layer_input: bool = False,
        return_convergence_delta: Literal[False] = False,
        relu_attributions: bool = True,
        return_weights: Literal[False] = False,
    ) -> Tensor: ...

    @overload
    def attribute(
        self,
        inputs: Union[Tensor, Tuple[Tensor, ...]],
        target: TargetType = None,
        additional_forward_args: Any = None,
        attribute_to_layer_input: bool = False,
        *,
        return_convergence_delta: Literal[True],
        relu_attributions: bool = True,
        return_weights: Literal[False] = False,
    ) -> Tuple[Tensor, Tensor]: ...

    @overload
    def attribute(
        self,
        inputs: Union[Tensor, Tuple[Tensor, ...]],
        target: TargetType = None,
        additional_forward_args: Any = None,
        attribute_to_layer_input: bool = False,
        return_convergence_delta: Literal[False] = False,
        relu_attributions: bool = True,
        *,
        return_weights: Literal[True],
    ) -> Tuple[Tensor, Tensor]: ...

    @overload
    def attribute(
        self,
        inputs: Union[Tensor, Tuple[Tensor, ...]],
        target: TargetType = None,
        additional_forward_args: Any = None,
        attribute_to_layer_input: bool = False,
        *,
        return_convergence_delta: Literal[True],
        relu_attributions: bool = True,
        return_weights: Literal[True],
    ) -> Tuple[Tensor, Tensor, Tensor]: ...

    @log_usage(part_of_slo=True)
    def attribute(
        self,
        inputs: Union[Tensor, Tuple[Tensor, ...]],
        target: TargetType = None,
        additional_forward_args: Any = None,
        attribute_to_layer_input: bool = False,
        return_convergence_delta: bool = False,
        relu_attributions: bool = True,
        return_weights: bool = False,
    ) -> Union[CamOutput, Tuple[Tensor, ...]]:
        r"""
        Args:
            inputs (Tensor or tuple[Tensor, ...]): the image batch ``N x C x H x W``
                        (first, when the model takes several inputs).
            target (int, list[int], Tensor, optional): the class per example, as in
                        Captum. ``None`` takes each example's predicted class.
                        Default: None.
            additional_forward_args (Any, optional): further arguments of
                        ``forward_func``, after the inputs. Default: None.
            attribute_to_layer_input (bool, optional): compute the map on the
                        layer's input instead of its output (the method then works
                        on the layer followed by the head). Default: False.
            return_convergence_delta (bool, optional): also return, per example,
                        the delta of DeepLIFT's summation-to-delta on the head,
                        ``sum_k alpha_k - (F_c(A) - F_c(0))`` (Captum's
                        ``LayerDeepLift`` delta at the layer; zero up to rounding).
                        Default: False.
            relu_attributions (bool, optional): apply ReLU to the map, as the paper
                        does. Default: True.
            return_weights (bool, optional): also return the ``N x K`` channel
                        weights ``alpha``. Default: False.

        Returns:
            *Tensor* or tuple of *Tensor*: the maps ``N x 1 x h x w`` at layer
            resolution; then the weights when ``return_weights`` is set; then the
            ``(N,)`` delta when ``return_convergence_delta`` is set.

        Examples::

            >>> maps, alpha = LayerLiftCam(net, net.layer4).attribute(
            ...     images, target=labels, return_weights=True)
        """
        if not isinstance(return_convergence_delta, bool):
            raise TypeError(
                "return_convergence_delta must be a bool; got "
                f"{type(return_convergence_delta).__name__}"
            )
        delta_out: List[Tensor] = []
        options: Dict[str, Any] = {"delta_out": delta_out} if return_convergence_delta else {}
        result = self._attribute_cam(
            inputs,
            target,
            additional_forward_args,
            attribute_to_layer_input,
            relu_attributions,
            return_weights,
            **options,
        )
        if not return_convergence_delta:
            return result
        parts = result if isinstance(result, tuple) else (result,)
        return (*parts, delta_out[0])
