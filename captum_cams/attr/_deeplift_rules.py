#!/usr/bin/env python3
"""DeepLIFT's rules for a head prepared by :func:`~captum_cams.attr._deeplift_head.deeplift_head`.

:class:`RescaleDeepLift` is Captum's ``DeepLift`` with the rule table extended by the
element-wise activations Captum does not list (:data:`RESCALE_RULES`). For an element-wise
function the Rescale multiplier ``(f(x) - f(x0)) / (x - x0)`` is exact whatever the function,
which is Captum's own ``nonlinear`` rule, reused here. :func:`fixed_scale_layer_norm` is the
LayerNorm whose scale is held at its value on the input, an affine map of the input.
"""

from typing import Any, Callable, Dict, Optional, Tuple, Type

import torch.nn as nn
from captum.attr import DeepLift
from captum.attr._core.deep_lift import SUPPORTED_NON_LINEAR, nonlinear
from torch import Tensor
from torch.nn import Module

#: Element-wise activations that Captum 0.9's ``DeepLift`` does not list; for any
#: element-wise function the Rescale multiplier ``delta_out / delta_in`` is exact.
_EXTRA_ELEMENTWISE: Tuple[Type[Module], ...] = (
    nn.ReLU6,
    nn.Hardtanh,
    nn.Hardswish,
    nn.Hardsigmoid,
    nn.SiLU,
    nn.GELU,
    nn.Mish,
    nn.CELU,
    nn.SELU,
    nn.Softsign,
    nn.PReLU,
)

#: The non-linearities a prepared head may hold, with their DeepLIFT rule: Captum's
#: table without ``Softmax`` (its rule is not element-wise; a head explained by its
#: logits has none) plus :data:`_EXTRA_ELEMENTWISE` with Captum's ``nonlinear`` rule.
RESCALE_RULES: Dict[Type[Module], Callable[..., Tensor]] = {
    **{kind: rule for kind, rule in SUPPORTED_NON_LINEAR.items() if kind is not nn.Softmax},
    **{kind: nonlinear for kind in _EXTRA_ELEMENTWISE},
}


def fixed_scale_layer_norm(
    input: Tensor,
    normalized_shape: Any,
    weight: Optional[Tensor] = None,
    bias: Optional[Tensor] = None,
    eps: float = 1e-5,
) -> Tensor:
    r"""
    ``F.layer_norm`` with its scale held fixed: ``(x - mean(x)) * s * weight + bias``
    with ``s = 1/sqrt(var(x) + eps)`` detached from the graph. Its value equals
    ``F.layer_norm``'s; its gradient is that of an affine map of ``x``.

    Args:
        input (Tensor): normalised over its last ``len(normalized_shape)`` dimensions.
        normalized_shape (int or tuple[int, ...]): as ``F.layer_norm``.
        weight (Tensor, optional): the element-wise scale. Default: None.
        bias (Tensor, optional): the element-wise shift. Default: None.
        eps (float, optional): added to the variance. Default: 1e-5.

    Returns:
        *Tensor*: the normalised input, shaped like ``input``.

    Examples::

        >>> x = torch.randn(2, 8, requires_grad=True)
        >>> y = fixed_scale_layer_norm(x, (8,))
        >>> torch.allclose(y, F.layer_norm(x, (8,)))
        True
    """
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else normalized_shape
    dims = tuple(range(-len(tuple(shape)), 0))
    centred = input - input.mean(dim=dims, keepdim=True)
    scale = (centred.detach().pow(2).mean(dim=dims, keepdim=True) + eps).rsqrt()
    output = centred * scale
    if weight is not None:
        output = output * weight
    if bias is not None:
        output = output + bias
    return output


class FixedScaleLayerNorm(Module):
    r"""
    An ``nn.LayerNorm`` (shared, not copied) evaluated by :func:`fixed_scale_layer_norm`.

    Args:
        norm (nn.LayerNorm): the layer whose shape, parameters and ``eps`` are used.

    Examples::

        >>> fixed = FixedScaleLayerNorm(nn.LayerNorm(8))
        >>> fixed(torch.randn(2, 8)).shape
        torch.Size([2, 8])
    """

    def __init__(self, norm: nn.LayerNorm) -> None:
        super().__init__()
        self.norm = norm

    def forward(self, input: Tensor) -> Tensor:
        norm = self.norm
        return fixed_scale_layer_norm(
            input, norm.normalized_shape, norm.weight, norm.bias, norm.eps
        )


class RescaleDeepLift(DeepLift):
    r"""
    Captum's :class:`~captum.attr.DeepLift` with the rule table :data:`RESCALE_RULES`:
    Captum's rules plus the exact element-wise Rescale rule for the activations that
    Captum does not list (``ReLU6``, ``Hardswish``, ``Hardsigmoid``, ``SiLU``, …).

    Use it on a head prepared by :func:`deeplift_head`, which guarantees that every
    non-linearity is a module of this table, called once.
    """

    def _is_non_linear(self, module: Module) -> bool:
        return type(module) in RESCALE_RULES

    def _backward_hook(self, module: Module, grad_input: Tensor, grad_output: Tensor) -> Tensor:
        if type(module) in SUPPORTED_NON_LINEAR:
            return super()._backward_hook(module, grad_input, grad_output)
        if not self.satisfies_attribute_criteria(module):
            raise RuntimeError(
                f"{module} lacks the inputs DeepLift recorded; it is probably called "
                "more than once (prepare the head with deeplift_head)"
            )
        multipliers = RESCALE_RULES[type(module)](
            module, module.input, module.output, grad_input, grad_output, eps=self.eps
        )
        del module.input
        del module.output
        return multipliers


__all__ = [
    "FixedScaleLayerNorm",
    "RESCALE_RULES",
    "RescaleDeepLift",
    "fixed_scale_layer_norm",
]
