#!/usr/bin/env python3
r"""Models whose output is not one tensor (Hugging Face, torchvision's segmentation
and detection models), made into the ``forward_func`` every method takes.

:class:`OutputAdapter` is an ``nn.Module``, not a function: ``torch.fx`` traces
through it, so the head methods (Ablation-, LIFT-, SHAP-CAM) still evaluate only the
part of the model after the layer. A ``lambda x: model(x).logits`` gives the same
outputs, but a function cannot be split, and every head evaluation then re-runs the
whole model.
"""

from collections.abc import Mapping
from typing import Any, Callable, Optional, Union

import torch.fx as fx
from torch import Tensor
from torch.nn import Module

#: What :class:`OutputAdapter`'s ``select`` may be: a key or attribute name, an index,
#: or a function of the model's output.
Selector = Union[None, str, int, Callable[[Any], Tensor]]


def _is_tensor(value: Any) -> bool:
    # a Proxy stands for a tensor while torch.fx traces the adapter
    return isinstance(value, (Tensor, fx.Proxy))


class OutputAdapter(Module):
    r"""
    Wraps a model so that it returns one tensor, whatever its own output is.

    Without ``select`` the tensor is the output itself when it is a tensor, else its
    ``logits`` (a Hugging Face ``ModelOutput``), else the first tensor of a dict (in
    its order: ``"out"`` of torchvision's segmentation models) or of a tuple or list.
    ``select`` picks another one: a key or attribute name (``"out"``,
    ``"pooler_output"``), an index into a tuple, or a function of the output (a class
    score summed over a region, one box's score of a detector; see
    ``docs/models_beyond_cnns.md``).

    All arguments go to the model unchanged. Being a module, the adapter is what
    ``torch.fx`` traces when a head method splits off the part after the layer (for
    one image input); a plain function would make every head evaluation a
    whole-model pass.

    Args:
        model (Callable): the model (an ``nn.Module`` or any callable).
        select (str, int or Callable, optional): which tensor to return. Default:
                    None (``logits``, else the first tensor).

    Examples::

        >>> from transformers import ResNetConfig, ResNetForImageClassification
        >>> hf = ResNetForImageClassification(ResNetConfig(num_labels=1000)).eval()
        >>> model = OutputAdapter(hf)                     # returns hf(x).logits
        >>> cam = LayerAblationCam(model, hf.resnet.encoder.stages[-1])
        >>> segmenter = torchvision.models.segmentation.lraspp_mobilenet_v3_large()
        >>> scores = OutputAdapter(segmenter, select="out")   # N x 21 x H x W
    """

    def __init__(self, model: Callable, select: Selector = None) -> None:
        super().__init__()
        if not callable(model):
            raise TypeError(f"model must be callable; got {type(model).__name__}")
        if select is not None and (isinstance(select, bool) or not isinstance(select, (str, int))):
            if not callable(select):
                raise TypeError(
                    "select must be a key or attribute name, an index or a function of the "
                    f"model's output; got {type(select).__name__}"
                )
        self.model = model
        self.select = select

    def forward(self, *args: Any, **kwargs: Any) -> Tensor:
        return self.pick(self.model(*args, **kwargs))

    def pick(self, output: Any) -> Tensor:
        r"""
        The tensor this adapter returns from the model's ``output``.

        Args:
            output (Any): what the model returned.

        Returns:
            *Tensor*: the selected tensor.

        Raises:
            TypeError: nothing in ``output`` is a tensor, or ``select`` does not
            lead to one; the message names what was found.

        Examples::

            >>> OutputAdapter(model, select="out").pick({"aux": a, "out": b}) is b
            True
        """
        select = self.select
        if select is None:
            picked = _default_tensor(output)
        elif callable(select):
            picked = select(output)
        elif isinstance(output, fx.Proxy):
            picked = output[select]  # type: ignore[index]  # a getitem node
        elif isinstance(select, str):
            if isinstance(output, Mapping) and select in output:
                picked = output[select]
            elif hasattr(output, select):
                picked = getattr(output, select)
            else:
                raise TypeError(
                    f"select={select!r}: the model's output ({_describe(output)}) has no such "
                    "key or attribute"
                )
        else:
            try:
                picked = output[select]
            except (TypeError, IndexError, KeyError) as error:
                raise TypeError(
                    f"select={select!r}: cannot index the model's output ({_describe(output)}): "
                    f"{error}"
                ) from None
        if not _is_tensor(picked):
            raise TypeError(
                f"select={select!r} gives a {type(picked).__name__}, not a tensor "
                f"(the model's output: {_describe(output)})"
            )
        return picked

    def extra_repr(self) -> str:
        return f"select={self.select!r}"


def _default_tensor(output: Any) -> Any:
    r"""The output itself, its ``logits``, or its first tensor (dict or sequence)."""
    if _is_tensor(output):
        return output
    if isinstance(output, Mapping):
        if _is_tensor(output.get("logits")):
            return output["logits"]
        values = list(output.values())
    elif isinstance(output, (tuple, list)):
        values = list(output)
    else:
        logits = getattr(output, "logits", None)
        if _is_tensor(logits):
            return logits
        values = []
    for value in values:
        if _is_tensor(value):
            return value
    raise TypeError(
        f"the model's output ({_describe(output)}) holds no tensor to return: pass "
        "select= (a key or attribute name, an index or a function of the output)"
    )


def _describe(output: Any) -> str:
    if isinstance(output, Mapping):
        return f"{type(output).__name__} with keys {', '.join(repr(k) for k in list(output)[:6])}"
    if isinstance(output, (tuple, list)):
        kinds = ", ".join(type(v).__name__ for v in list(output)[:6])
        return f"{type(output).__name__} of {kinds}"
    return type(output).__name__


def unwrapped_model(forward_func: Callable) -> Optional[Module]:
    r"""
    The module whose parameters run ``forward_func``: the module itself, the model
    inside an :class:`OutputAdapter`, or None for a function.

    Args:
        forward_func (Callable): what a method was given.

    Returns:
        *nn.Module* or *None*: the module, if any.

    Examples::

        >>> unwrapped_model(OutputAdapter(net)) is net
        True
    """
    if isinstance(forward_func, OutputAdapter):
        return unwrapped_model(forward_func.model) or forward_func
    return forward_func if isinstance(forward_func, Module) else None


__all__ = ["OutputAdapter"]
