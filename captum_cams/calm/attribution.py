#!/usr/bin/env python3
r"""Attributions of a CALM model, in Captum's style (Kim et al., ICCV 2021, Sec. 4.3)."""

from typing import Any, List, Optional, Sequence, Union

import torch
from captum._utils.common import _format_additional_forward_args
from captum._utils.gradient import _forward_layer_eval
from captum._utils.typing import TargetType
from captum.attr import LayerAttribution
from captum.log import log_usage
from torch import Tensor
from torch.nn import Module

from captum_cams._utils.guards import (
    check_image_batch,
    preserved_model_state,
    target_indices,
)
from captum_cams.calm.head import CALM

#: The attributions :meth:`CALMAttribution.attribute` computes.
ATTRIBUTION_TYPES = ("joint", "conditional", "saliency", "subset", "counterfactual")

SubsetLike = Union[Sequence[int], Sequence[Sequence[int]], Tensor]


class CALMAttribution(LayerAttribution):
    r"""
    The attribution maps of a :class:`~captum_cams.calm.CALM` model, read off its
    probabilistic head with one forward pass (no gradients):

    ======================  ======================================================
    ``attribution_type``    map at each location ``z`` of the feature grid
    ======================  ======================================================
    ``"joint"``             ``p(ŷ, z | x) = p(ŷ | x, z) · p(z | x)`` (default); it sums
                            over ``z`` to ``p(ŷ | x)`` (completeness)
    ``"conditional"``       ``p(ŷ | x, z)``
    ``"saliency"``          ``p(z | x)`` (class-agnostic)
    ``"subset"``            ``Σ_{y ∈ 𝒴} p(y, z | x)`` for a set of classes ``𝒴``
    ``"counterfactual"``    ``p(ŷ, z | x) − p(y', z | x)``: evidence for ``ŷ`` over ``y'``
    ======================  ======================================================

    ``ŷ`` is ``target`` (each example's predicted class when None). Maps are at the
    resolution of the backbone's features (the "layer" of this attribution,
    ``model.backbone``), ``N x 1 x h x w``, in probability units (not normalised);
    bring them to the input size with
    ``LayerAttribution.interpolate(maps, (H, W), "bilinear")``.

    Paper: Kim, Choe, Akata & Oh, "Keep CALM and Improve Visual Feature
    Attribution", ICCV 2021. https://arxiv.org/abs/2106.07861

    The maps are read off the features ``F`` that CALM's head takes. They are
    captured at ``layer`` with Captum's ``_forward_layer_eval`` during one forward
    of the whole model (so ``additional_forward_args``, such as CALM's
    ``log_probs``, reach the model as in any Captum attribution): the output of the
    backbone (the default layer), or, with ``attribute_to_layer_input=True``, the
    input of a layer that takes them (the classifier or the attention branch).

    Args:
        forward_func (CALM): the CALM model.
        layer (torch.nn.Module, optional): where the features are captured: the
                    backbone (its output) or the classifier / attention branch (their
                    input, with ``attribute_to_layer_input=True``). Default: None
                    (``forward_func.backbone``).
        device_ids (list[int], optional): as Captum's, for ``DataParallel``.
                    Default: None.

    Examples::

        >>> model = CALM.from_cifar_resnet(resnet20).eval()
        >>> maps = CALMAttribution(model).attribute(images, target=labels)   # joint
        >>> maps.flatten(1).sum(1)        # = p(label | x)
        >>> cf = CALMAttribution(model).attribute(
        ...     images, target=3, attribution_type="counterfactual", counterfactual_target=5)
    """

    def __init__(
        self,
        forward_func: CALM,
        layer: Optional[Module] = None,
        device_ids: Union[None, List[int]] = None,
    ) -> None:
        model = forward_func
        if not isinstance(model, CALM):
            raise TypeError(f"model must be a CALM model; got {type(model).__name__}")
        if layer is None:
            layer = model.backbone
        allowed = (model.backbone, model.classifier, model.attention)
        if not any(layer is module for module in allowed):
            raise ValueError(
                "layer must be the CALM model's backbone (its output is the features) or "
                "its classifier / attention branch (their input is the features)"
            )
        LayerAttribution.__init__(self, model, layer, device_ids)
        self.model = model

    @log_usage(part_of_slo=True)
    def attribute(
        self,
        inputs: Tensor,
        target: TargetType = None,
        additional_forward_args: Any = None,
        attribute_to_layer_input: bool = False,
        attribution_type: str = "joint",
        subset_targets: Optional[SubsetLike] = None,
        counterfactual_target: TargetType = None,
    ) -> Tensor:
        r"""
        Args:
            inputs (Tensor): ``N x 3 x H x W`` images (no NaN).
            target (int, list[int], Tensor, optional): the class ``ŷ`` per example;
                        None: the class of highest ``p(y | x)``. Ignored by
                        ``"saliency"`` and ``"subset"``. Default: None.
            additional_forward_args (Any, optional): further arguments of the
                        model's forward, after the inputs (CALM's ``log_probs``:
                        the maps do not depend on it). Default: None.
            attribute_to_layer_input (bool, optional): capture the features at the
                        layer's input; it must be True for the classifier or the
                        attention branch and False for the backbone. Default: False.
            attribution_type (str, optional): one of ``"joint"``, ``"conditional"``,
                        ``"saliency"``, ``"subset"``, ``"counterfactual"``.
                        Default: ``"joint"``.
            subset_targets (list[int], list[list[int]] or Tensor, optional): the
                        classes ``𝒴`` for ``"subset"``: one list for every example,
                        a list of lists (one per example), or an ``N x C`` bool
                        tensor. Required for ``"subset"``. Default: None.
            counterfactual_target (int, list[int], Tensor, optional): the class ``y'``
                        per example, for ``"counterfactual"`` (required there).
                        Default: None.

        Returns:
            *Tensor*: ``N x 1 x h x w`` maps in the inputs' dtype and device.

        Examples::

            >>> calm_attr = CALMAttribution(model)
            >>> joint = calm_attr.attribute(images, target=labels)
            >>> heat = LayerAttribution.interpolate(joint, images.shape[-2:], "bilinear")
        """
        check_image_batch(inputs)
        if attribution_type not in ATTRIBUTION_TYPES:
            raise ValueError(
                f"attribution_type must be one of {ATTRIBUTION_TYPES}; got {attribution_type!r}"
            )
        if attribution_type == "subset" and subset_targets is None:
            raise ValueError('subset_targets is required for attribution_type="subset"')
        if attribution_type == "counterfactual" and counterfactual_target is None:
            raise ValueError(
                'counterfactual_target is required for attribution_type="counterfactual"'
            )
        backbone = self.layer is self.model.backbone
        if attribute_to_layer_input == backbone:
            raise ValueError(
                "attribute_to_layer_input must be False with the backbone as the layer (its "
                "output is the features) and True with the classifier or the attention "
                "branch (their input is the features)"
            )
        extra = _format_additional_forward_args(additional_forward_args)
        with torch.no_grad(), preserved_model_state(self.model):
            (features,) = _forward_layer_eval(
                self.model,
                inputs,
                self.layer,
                extra,
                device_ids=self.device_ids,
                attribute_to_layer_input=attribute_to_layer_input,
            )
            output = self.model.components_from_features(features)
            log_probs = output.log_probs
            num = inputs.shape[0]
            rows = torch.arange(num, device=log_probs.device)
            if attribution_type == "saliency":
                maps = output.log_saliency.exp()
            elif attribution_type == "subset":
                member = _subset_mask(subset_targets, num, log_probs.shape[1])
                joint = output.log_joint.exp()
                maps = (joint * member.to(joint)[:, :, None, None]).sum(1, keepdim=True)
            else:
                classes = target_indices(target, log_probs)
                if attribution_type == "conditional":
                    maps = output.log_conditional[rows, classes].exp().unsqueeze(1)
                else:
                    joint = output.log_joint.exp()
                    maps = joint[rows, classes].unsqueeze(1)
                    if attribution_type == "counterfactual":
                        others = target_indices(counterfactual_target, log_probs)
                        maps = maps - joint[rows, others].unsqueeze(1)
        return maps.to(inputs.dtype)


def _subset_mask(subset_targets: Any, num: int, num_classes: int) -> Tensor:
    r"""``N x C`` bool membership from the accepted forms of ``subset_targets``."""
    if isinstance(subset_targets, Tensor):
        if subset_targets.dtype != torch.bool or tuple(subset_targets.shape) != (num, num_classes):
            raise ValueError(
                f"subset_targets given as a tensor must be an N x C bool mask ({num} x "
                f"{num_classes}); got {subset_targets.dtype} of shape "
                f"{tuple(subset_targets.shape)}"
            )
        return subset_targets
    if not isinstance(subset_targets, (list, tuple)) or len(subset_targets) == 0:
        raise TypeError(
            "subset_targets must be a non-empty list of classes, a list of lists (one per "
            "example) or an N x C bool tensor"
        )
    per_example: List[Sequence[Any]]
    if all(isinstance(s, (list, tuple)) for s in subset_targets):
        if len(subset_targets) != num:
            raise ValueError(
                f"subset_targets as a list of lists must hold one list per example ({num}); "
                f"got {len(subset_targets)}"
            )
        per_example = list(subset_targets)
    else:
        per_example = [subset_targets] * num
    mask = torch.zeros(num, num_classes, dtype=torch.bool)
    for i, classes in enumerate(per_example):
        if len(classes) == 0:
            raise ValueError(f"subset_targets of example {i} is empty")
        for c in classes:
            if isinstance(c, bool) or not isinstance(c, int) or not 0 <= c < num_classes:
                raise ValueError(
                    f"subset_targets must hold class indices in [0, {num_classes}); got {c!r}"
                )
            mask[i, c] = True
    return mask
