#!/usr/bin/env python3
r"""One forward pass that also captures a layer, through Captum's ``_forward_layer_eval``.

The attribution methods capture in :meth:`~captum_cams.attr._base.CamBase._capture`;
everything else that needs a layer's activations, with the model's output, calls
:func:`capture_layer`: the reference library, activation fine-tuning's channel count
and the command line's check of a named layer. Every such capture goes through
Captum's hooks (removed in ``finally``, gathered per device for ``DataParallel``).
"""

from typing import Any, Callable, Dict, List, Optional, Tuple, Union

import torch
from captum._utils.gradient import _forward_layer_eval
from torch import Tensor
from torch.nn import Module


class LayerNotCalledError(ValueError):
    r"""The captured layer did not run during the forward pass."""


def capture_layer(
    forward_func: Callable,
    inputs: Union[Tensor, Tuple[Tensor, ...]],
    layer: Module,
    additional_forward_args: Any = None,
    device_ids: Union[None, List[int]] = None,
    attribute_to_layer_input: bool = False,
    grad_enabled: Optional[bool] = None,
) -> Tuple[Tuple[Tensor, ...], Any]:
    r"""
    Runs ``forward_func(*inputs, *additional_forward_args)`` once and returns the
    layer's tensors (its output, or its input with ``attribute_to_layer_input``)
    and what ``forward_func`` returned.

    The layer's tensors are Captum's copies (``clone``), in the autograd graph when
    gradients are enabled; the model's own forward is unchanged.

    Args:
        forward_func (Callable): the model, or any callable.
        inputs (Tensor or tuple[Tensor, ...]): the inputs, as Captum takes them.
        layer (Module): the module to capture; if it runs several times in one
                    forward pass, its last call is kept.
        additional_forward_args (Any, optional): further arguments of
                    ``forward_func``, after the inputs, as in Captum. Default: None
        device_ids (list[int], optional): as Captum's ``LayerAttribution``, for a
                    ``forward_func`` that wraps a ``DataParallel`` model.
                    Default: None
        attribute_to_layer_input (bool, optional): capture the layer's input
                    instead of its output. Default: False
        grad_enabled (bool, optional): record the autograd graph. Default: None
                    (as the caller's context: ``torch.is_grad_enabled()``)

    Returns:
        *tuple[Tensor, ...]* of **layer_tensors** and *Any* of **output**:
        - **layer_tensors** (*tuple[Tensor, ...]*):
                    the layer's output (or input) tensors, one per tensor the
                    layer returns (or takes), concatenated over devices in
                    ``device_ids`` order.
        - **output** (*Any*):
                    what ``forward_func`` returned.

    Raises:
        LayerNotCalledError: (a ``ValueError``) the layer was not called during the
        forward pass.

    Examples::

        >>> net = torchvision.models.resnet18().eval()
        >>> (activations,), logits = capture_layer(net, torch.randn(2, 3, 224, 224), net.layer4)
        >>> activations.shape, logits.shape
        (torch.Size([2, 512, 7, 7]), torch.Size([2, 1000]))
    """
    record: Dict[str, Any] = {}

    def recorded(*args: Any) -> Any:
        record["output"] = forward_func(*args)
        return record["output"]

    if grad_enabled is None:
        grad_enabled = torch.is_grad_enabled()
    try:
        layer_tensors = _forward_layer_eval(
            recorded,
            inputs,
            layer,
            additional_forward_args,
            device_ids=device_ids,
            attribute_to_layer_input=attribute_to_layer_input,
            grad_enabled=grad_enabled,
        )
    except AssertionError as error:
        if "did not obtain any outputs" in str(error):
            raise LayerNotCalledError("layer was not called by the model's forward pass") from error
        raise
    return layer_tensors, record["output"]


def single_feature_map(layer_tensors: Tuple[Tensor, ...]) -> Tensor:
    r"""
    The one ``N x K x h x w`` tensor of a capture by :func:`capture_layer`.

    Args:
        layer_tensors (tuple[Tensor, ...]): the captured tensors.

    Returns:
        *Tensor* of **activations**:
        - **activations** (*Tensor*):
                    the layer's single 4-D tensor.

    Raises:
        ValueError: the layer gave several tensors, or one that is not 4-D; the
        message gives their shapes.

    Examples::

        >>> single_feature_map(capture_layer(net, x, net.layer4)[0]).shape
        torch.Size([2, 512, 7, 7])
    """
    if len(layer_tensors) != 1 or layer_tensors[0].dim() != 4:
        shapes = ", ".join(str(tuple(value.shape)) for value in layer_tensors)
        raise ValueError(f"the layer's output must be one N x K x h x w tensor; got {shapes}")
    return layer_tensors[0]


__all__ = ["LayerNotCalledError", "capture_layer", "single_feature_map"]
