#!/usr/bin/env python3
"""Argument checks and the model-state guard shared by every method and metric.

Every public entry point validates its arguments here, so the error messages name
the argument the same way everywhere, and runs the model inside
:func:`preserved_model_state`, so the user's model is left as it was.
"""

import contextlib
import re
from typing import Any, Callable, Iterator, List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor
from torch.nn import Module

TargetLike = Union[None, int, Tuple[int, ...], Tensor, List[Tuple[int, ...]], List[int]]


def check_image_batch(inputs: Any, name: str = "inputs") -> Tensor:
    r"""
    Checks that ``inputs`` is a 4-D floating-point ``N x C x H x W`` batch of finite
    values (no NaN, no ±Inf: either would turn every map and score into NaN).

    Args:
        inputs (Any): the value to check.
        name (str, optional): the argument name used in error messages.
                    Default: ``"inputs"``.

    Returns:
        *Tensor*: ``inputs`` itself.
    """
    if not isinstance(inputs, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor; got {type(inputs).__name__}")
    if inputs.dim() != 4:
        raise ValueError(
            f"{name} must be a 4-D tensor (N, C, H, W); got shape {tuple(inputs.shape)}"
        )
    if inputs.shape[0] == 0:
        raise ValueError(f"{name} must hold at least one example; got batch size 0")
    if not inputs.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor; got {inputs.dtype}")
    check_finite(inputs, name)
    return inputs


def check_finite(values: Tensor, name: str) -> Tensor:
    r"""
    Checks that a floating-point tensor holds no NaN and no ±Inf.

    Args:
        values (Tensor): the tensor (other dtypes pass unchecked: they cannot
                    hold either).
        name (str): the argument name used in the error message.

    Returns:
        *Tensor*: ``values`` itself.

    Raises:
        ValueError: naming ``name``, what it holds (NaN, +Inf, -Inf) and how many.

    Examples::

        >>> check_finite(torch.tensor([1.0, float("inf")]), "baselines")
        Traceback (most recent call last):
        ValueError: baselines contains +Inf (1 of 2 values); every value must be finite
    """
    if not (values.is_floating_point() or values.is_complex()):
        return values
    finite = torch.isfinite(values)
    if bool(finite.all()):
        return values
    kinds = [
        label
        for label, found in (
            ("NaN", torch.isnan(values)),
            ("+Inf", torch.isposinf(values.real if values.is_complex() else values)),
            ("-Inf", torch.isneginf(values.real if values.is_complex() else values)),
        )
        if bool(found.any())
    ]
    bad = int((~finite).sum())
    raise ValueError(
        f"{name} contains {' and '.join(kinds)} ({bad} of {values.numel()} values); "
        "every value must be finite"
    )


_CHANNELS = re.compile(r"expected input\[[^\]]*\] to have (\d+) channels, but got (\d+) channels")


def _floating_parameter_dtypes(model: Any) -> List[torch.dtype]:
    if not isinstance(model, Module):
        return []
    found: List[torch.dtype] = []
    for tensor in list(model.parameters()) + list(model.buffers()):
        if tensor.is_floating_point() and tensor.dtype not in found:
            found.append(tensor.dtype)
    return found


def describe_forward_failure(
    model: Any, inputs: Tensor, additional_forward_args: Sequence[Any], error: BaseException
) -> Optional[Exception]:
    r"""
    The user-level cause of a failed forward pass, when one can be named.

    Called only after the model raised, so a model that accepts unusual inputs is
    never refused: the cause is looked for among the inputs' dtype (against the
    model's parameters), the inputs' channel count (against the model's first
    convolution, as the convolution reports it) and the batch size of the tensors
    in ``additional_forward_args``.

    Args:
        model (Any): the model (an ``nn.Module`` or any callable).
        inputs (Tensor): the ``N x C x H x W`` image batch given to it.
        additional_forward_args (sequence): the further arguments given to it.
        error (BaseException): what the model raised.

    Returns:
        *Exception* or *None*: a ``TypeError`` / ``ValueError`` naming ``inputs`` or
        ``additional_forward_args[i]``, or None when the cause is not one of these.
    """
    first = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
    dtypes = _floating_parameter_dtypes(model)
    if (
        len(dtypes) == 1
        and inputs.dtype != dtypes[0]
        and not torch.is_autocast_enabled(inputs.device.type)
    ):
        return TypeError(
            f"inputs are {inputs.dtype} but the model's parameters are {dtypes[0]}: convert "
            f"the inputs (inputs.to({dtypes[0]})) or the model (the model failed with: {first})"
        )
    match = _CHANNELS.search(str(error))
    if match is not None and int(match.group(2)) == inputs.shape[1]:
        return ValueError(
            f"inputs has {inputs.shape[1]} channels but the model expects {match.group(1)} "
            f"(shape {tuple(inputs.shape)}; the model failed with: {first})"
        )
    num = inputs.shape[0]
    for i, value in enumerate(additional_forward_args):
        if isinstance(value, Tensor) and value.dim() > 0 and value.shape[0] not in (1, num):
            return ValueError(
                f"additional_forward_args[{i}] has {value.shape[0]} rows (shape "
                f"{tuple(value.shape)}) but inputs has {num} examples: give one row per "
                f"example (the model failed with: {first})"
            )
    return None


@contextlib.contextmanager
def explained_forward_errors(
    model: Any, inputs: Tensor, additional_forward_args: Any = None
) -> Iterator[None]:
    r"""
    Re-raises a ``RuntimeError`` of the model as one clear error naming the argument
    at fault (see :func:`describe_forward_failure`); other errors pass unchanged.

    Args:
        model (Any): the model.
        inputs (Tensor): the image batch.
        additional_forward_args (Any, optional): the further arguments, as Captum
                    takes them. Default: None

    Examples::

        >>> with explained_forward_errors(model, x):
        ...     model(x.double())  # TypeError: inputs are torch.float64 but ...
    """
    try:
        yield
    except RuntimeError as error:
        if additional_forward_args is None:
            extra: Tuple[Any, ...] = ()
        elif isinstance(additional_forward_args, tuple):
            extra = additional_forward_args
        else:
            extra = (additional_forward_args,)
        explained = describe_forward_failure(model, inputs, extra, error)
        if explained is None:
            raise
        raise explained from error


def check_choice(value: Any, choices: Sequence[str], name: str) -> str:
    r"""
    Checks that an option is one of ``choices``; the error names the argument and
    the choices (``"score must be 'probability' or 'logit'; got 'prob'"``).
    """
    if value not in choices:
        listed = ", ".join(repr(c) for c in choices[:-1]) + f" or {choices[-1]!r}"
        raise ValueError(f"{name} must be {listed}; got {value!r}")
    return value


def check_positive_int(value: Any, name: str, allow_none: bool = True) -> Optional[int]:
    r"""Checks that ``value`` is a positive int (or None when allowed) and returns it."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int; got {value!r}")
    return value


def _class_of_index(index: Any, what: str) -> int:
    r"""The class of one Captum target index: an int, or a tuple of one int."""
    if isinstance(index, tuple):
        if len(index) != 1:
            raise ValueError(
                f"{what} given as a tuple is one index into every example's output after "
                "the batch dimension (Captum's convention); the model's output is "
                f"N x num_classes, so the tuple must hold one int; got {index!r}"
            )
        index = index[0]
    if isinstance(index, bool) or not isinstance(index, int):
        raise TypeError(f"{what} must hold ints; got {index!r}")
    return index


def format_target(target: TargetLike, num_examples: int, device: torch.device) -> Tensor:
    r"""
    Turns a Captum ``TargetType`` other than None into one class index per example,
    with the checks that need no model output (the class range is checked by
    :func:`target_indices` once outputs exist).

    As Captum's ``_select_targets``: an int, a one-element tensor or a tuple is one
    index applied to every example (a tuple indexes the dimensions after the batch
    dimension, so for ``N x num_classes`` outputs it holds one int); a list, or a
    tensor of ``N`` elements, holds one index per example (a list may hold ints or
    one-int tuples).

    Args:
        target (int, tuple[int], list[int], list[tuple[int]] or Tensor): the target
                    as the user gave it.
        num_examples (int): the number of examples ``N``.
        device (torch.device): where the indices go.

    Returns:
        *Tensor*: a ``torch.long`` tensor of shape ``(N,)`` on ``device``.

    Examples::

        >>> format_target((3,), 2, torch.device("cpu"))   # one index for every example
        tensor([3, 3])
        >>> format_target([(3,), (1,)], 2, torch.device("cpu"))
        tensor([3, 1])
    """
    if target is None:
        raise ValueError("format_target needs a target; None means the predicted class")
    if isinstance(target, bool):
        raise TypeError("target must be an int, a tuple, a list or a tensor; got bool")
    if isinstance(target, (int, tuple)):
        indices = torch.full((num_examples,), _class_of_index(target, "target"), dtype=torch.long)
    elif isinstance(target, list):
        if len(target) != num_examples or not all(
            isinstance(t, (int, tuple)) and not isinstance(t, bool) for t in target
        ):
            raise ValueError(
                f"target given as a list must hold one int per example ({num_examples}); "
                f"got {target!r}"
            )
        indices = torch.tensor([_class_of_index(t, "target") for t in target], dtype=torch.long)
    elif isinstance(target, Tensor):
        if target.is_floating_point() or target.is_complex():
            raise TypeError(f"target must be an integer tensor; got {target.dtype}")
        if target.dim() == 0 or target.numel() == 1:
            indices = target.reshape(()).expand(num_examples)
        elif target.dim() == 1 and target.shape[0] == num_examples:
            indices = target
        else:
            raise ValueError(
                f"target tensor must be a scalar or have shape ({num_examples},); got "
                f"shape {tuple(target.shape)}"
            )
        indices = indices.to(dtype=torch.long)
    else:
        raise TypeError(
            f"target must be an int, a tuple, a list or a tensor; got {type(target).__name__}"
        )
    return indices.to(device)


def target_indices(target: TargetLike, outputs: Tensor) -> Tensor:
    r"""
    Turns a Captum ``TargetType`` into one class index per example, checked.

    ``None`` selects each example's predicted class (the arg-max of ``outputs``),
    as pytorch-grad-cam and torchcam do.

    Args:
        target (int, tuple[int], list, Tensor or None): the target as the user gave
                    it (read as :func:`format_target` reads it).
        outputs (Tensor): the model's ``N x C`` outputs for the batch.

    Returns:
        *Tensor*: a ``torch.long`` tensor of shape ``(N,)`` on ``outputs.device``.
    """
    if outputs.dim() != 2:
        raise ValueError(
            "the model output must be N x num_classes for class-activation maps; got "
            f"shape {tuple(outputs.shape)}"
        )
    num_examples, num_classes = outputs.shape
    if target is None:
        return outputs.argmax(dim=1)
    indices = format_target(target, num_examples, outputs.device)
    if bool(((indices < 0) | (indices >= num_classes)).any()):
        raise ValueError(
            f"target out of range: the model has {num_classes} classes; got {indices.tolist()}"
        )
    return indices


def check_layer_in_model(forward_func: Callable, layer: Any, name: str = "layer") -> None:
    r"""Checks that ``layer`` is a module and, for a module model, one of its submodules."""
    if not isinstance(layer, Module):
        raise TypeError(f"{name} must be a torch.nn.Module; got {type(layer).__name__}")
    if isinstance(forward_func, Module) and not any(m is layer for m in forward_func.modules()):
        raise ValueError(f"{name} is not a submodule of the model (forward_func)")


@contextlib.contextmanager
def parameters_without_grad(model: Any) -> Iterator[None]:
    r"""
    Turns off ``requires_grad`` of the model's parameters for the duration, and
    restores each flag on exit (exceptions included).

    Gradients with respect to a layer's output do not need the parameters'
    gradients, so a forward run inside this context records no autograd graph for
    the layers before the layer (less time, and none of their activations saved
    for a backward that never reaches them); the gradients to the layer are the
    same. A ``forward_func`` that is not an ``nn.Module`` is left alone.

    Args:
        model (Any): the model, or any callable.
    """
    if not isinstance(model, Module):
        yield
        return
    switched = [p for p in model.parameters() if p.requires_grad]
    for param in switched:
        param.requires_grad_(False)
    try:
        yield
    finally:
        for param in switched:
            param.requires_grad_(True)


@contextlib.contextmanager
def preserved_model_state(model: Any) -> Iterator[None]:
    r"""
    Restores the model's train/eval flags, ``requires_grad`` flags, the
    parameters' ``.grad`` tensors and its buffers (e.g. batch-norm running
    statistics, which a forward in train mode updates) on exit, exceptions included.

    A ``forward_func`` that is not an ``nn.Module`` is left alone.

    Args:
        model (Any): the model, or any callable.

    Examples::

        >>> with preserved_model_state(model):
        ...     model.eval()
        >>> # model.training is what it was before
    """
    if not isinstance(model, Module):
        yield
        return
    # one walk over the modules (model.parameters() and .buffers() would walk them
    # again, each, and deduplicate); a parameter shared by two modules is simply
    # restored twice
    modes: List[Tuple[Module, bool]] = []
    params: List[Tensor] = []
    buffers: List[Tuple[Tensor, Tensor]] = []
    for module in model.modules():
        modes.append((module, module.training))
        params.extend(p for p in module._parameters.values() if p is not None)
        buffers.extend((b, b.detach().clone()) for b in module._buffers.values() if b is not None)
    flags = [p.requires_grad for p in params]
    grads = [p.grad for p in params]
    try:
        yield
    finally:
        # flags are written back only where they changed: a call that changed none
        # (the usual case) pays no attribute write per module and parameter. Buffers
        # are always copied back (batch norm updates its running statistics without
        # bumping their version counters).
        for module, mode in modes:
            if module.training is not mode:
                module.training = mode
        with torch.no_grad():
            for buffer, saved in buffers:
                buffer.copy_(saved)
        for param, flag, grad in zip(params, flags, grads):
            if param.requires_grad is not flag:
                param.requires_grad_(flag)
            if param.grad is not grad:
                param.grad = grad
