#!/usr/bin/env python3
import warnings
from typing import Any, Callable, Dict, List, Literal, Optional, Tuple, Union, overload

import torch
from captum._utils.typing import TargetType
from captum.attr import LRP
from captum.attr._utils.attribution import GradientAttribution
from captum.log import log_usage
from torch import Tensor
from torch.nn import Module

from captum_cams.attr._base import CamContext, CamOutput, HeadCamBase
from captum_cams.attr._lrp_head import RelevanceHead, cached_relevance_head
from captum_cams.attr._reshape import ReshapeTransform


class _SiteLRP(LRP):
    r"""Captum's LRP on a :class:`RelevanceHead`, whose rule-bearing modules are copies
    rebound to the model's tensors before every call: Captum's restoring of the state
    dict (a write into every parameter) is not needed, and is skipped so that no call
    ever writes into the model's tensors."""

    def _restore_state(self) -> None:
        return None


class LayerRelevanceCam(HeadCamBase, GradientAttribution):
    r"""
    Relevance-CAM: channel weights ``w_k = sum_ij R_k,ij``, the relevance that
    layer-wise relevance propagation (LRP) carries from the target's logit to the
    layer; map ``relu(sum_k w_k A_k)``.

    Relevance starts as the target logit ``y_c`` and is propagated through the model's
    head (given, or split from the model with ``torch.fx``) by Captum's :class:`LRP`
    with Captum's rules: the z⁺ rule (``Alpha1_Beta0_Rule``, bias set to zero) on every
    convolution and linear layer but the output one, the ε rule (``EpsilonRule``) on
    the output layer, pooling and additions; batch-norm passes relevance through
    (``IdentityRule``). Where those rules are exact (a sequential head of z⁺ layers on
    non-negative inputs, as VGG's classifier after ``features[-1]``) relevance is
    conserved: ``sum_k w_k = y_c - b_c`` (the output layer's bias takes its share),
    tested in float64, through skip connections too; ``return_convergence_delta``
    returns Captum's delta ``y_c - sum_k w_k``.

    Skip connections: Captum's LRP hands the whole relevance of ``a + b`` to both
    summands when the sum is written ``a + b`` (torchvision's ResNet blocks), which
    creates relevance. The head is therefore rewritten
    (:func:`~captum_cams.attr._lrp_head.relevance_head`) so that every such sum is
    Captum's ``Addition_Module`` with the ε rule — relevance split in proportion to
    ``a`` and ``b``, and summed again where the branches fork — which is what the
    paper's authors' code does at ResNet's skip connections (``Add`` and ``Clone``);
    the paper's own text gives no rule for them. Unlike the authors' code, relevance
    starts at ``y_c`` (not 1), the output layer uses the ε rule (theirs: z⁺), it is not
    contrasted with the other classes (their CLRP), and a convolution's bias is left
    out of its z⁺ denominator (theirs adds it twice): the map's scale differs and its
    shape can. A head with an operation without a rule (squeeze-excitation's product,
    LayerNorm, an unknown module) is refused, naming it.

    Paper: Lee et al., "Relevance-CAM: Your Model Already Knows Where to Look",
    CVPR 2021. https://openaccess.thecvf.com/content/CVPR2021/html/Lee_Relevance-CAM_Your_Model_Already_Knows_Where_To_Look_CVPR_2021_paper.html

    Args:
        forward_func (Callable or torch.nn.Module): the model.
        layer (torch.nn.Module): the convolutional layer whose output ``A``
                    (``N x K x h x w``) the map is computed on.
        device_ids (list[int], optional): device ids for a model wrapped in
                    ``DataParallel``, as in Captum. Default: None.
        head (torch.nn.Module, optional): the part of the model from the layer's
                    output to its output. Default: None (split with ``torch.fx``);
                    checked once against the model.
        epsilon (float, optional): the ε of the output layer's rule. Default: 1e-9
                    (Captum's).
        reshape_transform (Callable, optional): turns the layer's output into
                    ``N x K x h x w`` (pytorch-grad-cam's argument). The relevance is
                    propagated to the layer's real output and reshaped the same way.
                    Default: None

    Examples::

        >>> net = torchvision.models.vgg16().eval()
        >>> maps, weights = LayerRelevanceCam(net, net.features[-1]).attribute(
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
        epsilon: float = 1e-9,
        reshape_transform: Optional[ReshapeTransform] = None,
    ) -> None:
        if isinstance(epsilon, bool) or not isinstance(epsilon, (int, float)) or not epsilon > 0:
            raise ValueError(f"epsilon must be a number > 0; got {epsilon!r}")
        HeadCamBase.__init__(self, forward_func, layer, device_ids, head, reshape_transform)
        GradientAttribution.__init__(self, forward_func)
        if self.head.module is None:
            raise ValueError(
                "Relevance-CAM needs the model's head as a module, and the model could not "
                "be split after the layer with torch.fx (skip connections around the "
                "layer, or code torch.fx cannot trace); pass head= (the part of the "
                "model from the layer's output to its output)"
            )
        self.epsilon = float(epsilon)
        self.relevance_head = cached_relevance_head(self.head.module)
        self._input_relevance_head: Optional[RelevanceHead] = None
        # A comes from a forward-only capture; the relevance from the head alone
        self.uses_gradients = False

    def _prepared_head(self, attribute_to_layer_input: bool) -> RelevanceHead:
        if not attribute_to_layer_input:
            return self.relevance_head
        if self._input_relevance_head is None:
            input_head = self._head_for(True).module
            assert input_head is not None
            self._input_relevance_head = cached_relevance_head(input_head)
        return self._input_relevance_head

    def has_convergence_delta(self) -> bool:
        r"""Captum's LRP delta ``y_c - sum_k w_k``: the output layer's bias ``b_c``
        where every other rule conserves relevance."""
        return True

    def _weights(self, context: CamContext) -> Tensor:
        prepared = self._prepared_head(context.attribute_to_layer_input)
        head = self._verified_layer_head(context)
        # the relevance of the layer's real output, reshaped like the activations
        # (as a gradient is) where there is a reshape_transform
        activations = (
            context.activations if context.raw_activations is None else context.raw_activations
        )
        rows = torch.arange(activations.shape[0], device=activations.device)
        extras = head._extra_arguments(rows)
        with prepared.rules_attached(self.epsilon) as module, warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*hooks and attributes.*")
            relevance, delta = _SiteLRP(module).attribute(
                activations.clone().requires_grad_(),
                target=context.target,
                additional_forward_args=extras or None,
                return_convergence_delta=True,
            )
        delta_out: Optional[List[Tensor]] = context.options.get("delta_out")
        if delta_out is not None:
            delta_out.append(delta.detach())
        relevance = relevance.detach()
        if self.reshape_transform is not None:
            relevance = self.reshape_transform(relevance)
        return relevance.sum(dim=(2, 3))

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
            attribute_to_layer_input (bool, optional): the relevance at the layer's
                        input (the layer's own rule applied too). Default: False.
            return_convergence_delta (bool, optional): also return, per example,
                        Captum's LRP delta ``y_c - sum_k w_k`` (the output layer's bias
                        ``b_c`` where the other rules conserve relevance). Default: False.
            relu_attributions (bool, optional): apply ReLU to the map, as the paper
                        does. Default: True.
            return_weights (bool, optional): also return the ``N x K`` weights.
                        Default: False.

        Returns:
            *Tensor* or tuple of *Tensor*: the maps ``N x 1 x h x w`` at layer
            resolution; then the weights when ``return_weights`` is set; then the
            ``(N,)`` delta when ``return_convergence_delta`` is set.

        Examples::

            >>> maps = LayerRelevanceCam(net, net.features[-1]).attribute(images, labels)
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
