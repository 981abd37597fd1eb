#!/usr/bin/env python3
"""Argument checks and the model-state guard shared by every method and metric.

Every public entry point validates its arguments here, so the error messages name
the argument the same way everywhere, and runs the model inside
:func:`preserved_model_state`, so the user's model is left as it was.
"""

import contextlib
from typing import Any, Callable, Iterator, List, Optional, Sequence, Tuple

import torch
from captum._utils.typing import TargetType
from torch import Tensor
from torch.nn import Module


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
    # A finite sum proves every value finite (a NaN or an Inf makes the sum NaN or
    # Inf) and costs one reduction without a mask the size of the input, a twentieth
    # of isfinite(values).all() on an image; only a sum that is not finite (which
    # overflow of large finite values can also give) needs the exact check.
    if bool(torch.isfinite(values.sum())):
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


def check_additional_forward_args(
    additional_forward_args: Optional[Tuple[Any, ...]], num_examples: int
) -> None:
    r"""
    Checks Captum's rule for ``additional_forward_args``: a tensor's first dimension is
    the number of examples (a single row is broadcast to every example), so that the
    rows of perturbed copies can be matched with their examples.

    Args:
        additional_forward_args (tuple, optional): the formatted further arguments.
        num_examples (int): ``N``, the examples of ``inputs``.

    Examples::

        >>> check_additional_forward_args((torch.zeros(3),), 2)
        Traceback (most recent call last):
        ValueError: additional_forward_args[0] has 3 rows (shape (3,)) but inputs has 2 ...
    """
    for i, value in enumerate(additional_forward_args or ()):
        if (
            isinstance(value, Tensor)
            and value.dim() > 0
            and value.shape[0] not in (1, num_examples)
        ):
            raise ValueError(
                f"additional_forward_args[{i}] has {value.shape[0]} rows (shape "
                f"{tuple(value.shape)}) but inputs has {num_examples} examples: give one row "
                "per example"
            )


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


def format_target(target: TargetType, num_examples: int, device: torch.device) -> Tensor:
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


def target_indices(target: TargetType, outputs: Tensor) -> Tensor:
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


def check_output_tensor(outputs: Any, name: str = "forward_func") -> Tensor:
    r"""
    Checks that a model returned one tensor; otherwise the error names what it
    returned and the adapter that picks a tensor out of it.

    Args:
        outputs (Any): what the model returned.
        name (str, optional): the argument the model was given as.
                    Default: ``"forward_func"``

    Returns:
        *Tensor*: ``outputs`` itself.

    Raises:
        TypeError: ``outputs`` is not a tensor (a Hugging Face ``ModelOutput``, a
        dict, a tuple, ...).

    Examples::

        >>> check_output_tensor({"out": torch.zeros(1, 21, 8, 8)})
        Traceback (most recent call last):
        TypeError: forward_func must return a tensor; got dict (keys 'out'): ...
    """
    if isinstance(outputs, Tensor):
        return outputs
    described = type(outputs).__name__
    if isinstance(outputs, dict):
        described += f" (keys {', '.join(repr(k) for k in list(outputs)[:6])})"
    raise TypeError(
        f"{name} must return a tensor; got {described}: wrap the model in "
        "captum_cams.OutputAdapter(model), which returns .logits when present, else the "
        "first tensor (select= picks another: a key, an index or a function of the output)"
    )


def format_target_positions(target: TargetType, num_examples: int, device: torch.device) -> Tensor:
    r"""
    Turns a Captum ``TargetType`` other than None into indices into every example's
    output, for outputs of any rank (checked against them by
    :func:`target_positions`).

    As Captum's ``_select_targets``: an int, a one-element tensor or a tuple is one
    index for every example (a tuple indexes the dimensions after the batch
    dimension, ``(c, h, w)`` for an ``N x C x H x W`` output); a list holds one int
    or one tuple per example; a tensor of ``N`` elements one class per example. An
    ``N x D`` integer tensor (one row of ``D`` indices per example) is accepted too.

    Args:
        target (int, tuple, list or Tensor): the target as the user gave it.
        num_examples (int): the number of examples ``N``.
        device (torch.device): where the indices go.

    Returns:
        *Tensor*: ``torch.long``, ``(N,)`` when every target is one index (a class),
        else ``N x D`` (``D`` indices per example; ``D = 0`` for ``target=()``).

    Examples::

        >>> format_target_positions((3, 10, 20), 2, torch.device("cpu"))
        tensor([[ 3, 10, 20],
                [ 3, 10, 20]])
        >>> format_target_positions([3, (1,)], 2, torch.device("cpu"))
        tensor([3, 1])
    """
    if target is None:
        raise ValueError("format_target_positions needs a target; None means the default")
    if isinstance(target, tuple) or (
        isinstance(target, list) and target and all(isinstance(t, tuple) for t in target)
    ):
        rows: List[Any] = [target] * num_examples if isinstance(target, tuple) else target
        if len(rows) != num_examples:
            raise ValueError(
                f"target given as a list must hold one tuple per example ({num_examples}); "
                f"got {len(rows)}"
            )
        lengths = {len(row) for row in rows}
        if len(lengths) != 1:
            raise ValueError(f"target tuples must all have the same length; got {target!r}")
        length = lengths.pop()
        for row in rows:
            if any(isinstance(i, bool) or not isinstance(i, int) for i in row):
                raise TypeError(f"target tuples must hold ints; got {row!r}")
        if length != 1:
            return torch.tensor(rows, dtype=torch.long, device=device).reshape(num_examples, length)
    if isinstance(target, Tensor) and target.dim() == 2 and target.shape[0] == num_examples:
        if target.is_floating_point() or target.is_complex():
            raise TypeError(f"target must be an integer tensor; got {target.dtype}")
        if target.shape[1] != 1:
            return target.to(dtype=torch.long, device=device)
        target = target[:, 0]
    return format_target(target, num_examples, device)


def target_positions(target: TargetType, outputs: Tensor) -> Tensor:
    r"""
    Captum's ``TargetType`` for a model output of any rank, checked: what
    :func:`target_values` selects, one value per example.

    * ``N x num_classes`` outputs: one class per example, as :func:`target_indices`
      (None: the predicted class);
    * ``N x d1 x … x dD`` outputs (``D > 1``, e.g. a segmentation's ``N x C x H x W``):
      one tuple of ``D`` indices, ``(c, h, w)``, for every example or per example;
      None is an error (no single value to explain);
    * ``(N,)`` outputs (one score per example): None, the score itself.

    Args:
        target (int, tuple, list, Tensor or None): the target as the user gave it.
        outputs (Tensor): the model's outputs for the batch.

    Returns:
        *Tensor*: ``torch.long`` on ``outputs.device``: ``(N,)`` classes for
        ``N x num_classes`` outputs, else ``N x D``.

    Examples::

        >>> masks = torch.randn(2, 21, 8, 8)              # a segmentation's output
        >>> target_positions((15, 4, 4), masks).shape
        torch.Size([2, 3])
    """
    if outputs.dim() == 2:
        if isinstance(target, Tensor) and target.dim() == 2 and len(target) == len(outputs):
            if target.shape[1] != 1:  # N x D rows, as format_target_positions makes
                raise ValueError(
                    "target given as a tuple is one index into every example's output "
                    "after the batch dimension (Captum's convention); the model's output "
                    f"is N x num_classes, so the tuple must hold one int; got "
                    f"{target.shape[1]} per example"
                )
            target = target[:, 0]
        return target_indices(target, outputs)
    num_examples = outputs.shape[0]
    dims = outputs.dim() - 1
    shape = tuple(outputs.shape)
    if target is None:
        if dims == 0:
            return torch.zeros((num_examples, 0), dtype=torch.long, device=outputs.device)
        raise ValueError(
            f"target is needed: the model's output has shape {shape}, so no predicted class "
            f"is defined; give one index per dimension after the batch dimension, a tuple "
            f"of {dims} ints (e.g. (c, h, w) for a segmentation's N x C x H x W), or wrap "
            "the model so that it returns N x num_classes scores"
        )
    positions = format_target_positions(target, num_examples, outputs.device)
    found = 1 if positions.dim() == 1 else positions.shape[1]
    if found != dims:
        raise ValueError(
            f"target given as {target!r} selects {found} index per example after the batch "
            f"dimension; the model's output has shape {shape}, so each target must hold "
            f"{dims} indices (one value per example)"
        )
    for dim in range(dims):
        column = positions[:, dim]
        if bool(((column < 0) | (column >= shape[dim + 1])).any()):
            raise ValueError(
                f"target out of range: dimension {dim + 1} of the model's output has "
                f"{shape[dim + 1]} entries; got {column.tolist()}"
            )
    return positions


def target_values(outputs: Tensor, positions: Tensor) -> Tensor:
    r"""
    The one value per example (or row) that :func:`target_positions` points at.

    Args:
        outputs (Tensor): ``M x …`` outputs.
        positions (Tensor): ``(M,)`` classes or ``M x D`` indices.

    Returns:
        *Tensor*: ``(M,)`` values, in the autograd graph of ``outputs``.

    Examples::

        >>> target_values(torch.tensor([[1.0, 2.0], [3.0, 4.0]]), torch.tensor([1, 0]))
        tensor([2., 3.])
    """
    positions = positions.to(outputs.device)
    if positions.dim() == 1:
        return outputs.gather(1, positions[:, None]).squeeze(1)
    rows = torch.arange(outputs.shape[0], device=outputs.device)
    return outputs[(rows, *positions.unbind(1))]


def captum_target(positions: Tensor) -> TargetType:
    r"""
    :func:`target_positions`' indices as a target for Captum's own classes: the
    ``(N,)`` classes as they are, ``N x D`` indices as a list of tuples, ``N x 0``
    (one output per example) as None.

    Args:
        positions (Tensor): ``(N,)`` or ``N x D`` indices.

    Returns:
        *Tensor*, *list[tuple[int, ...]]* or *None*: Captum's ``TargetType``.

    Examples::

        >>> captum_target(torch.tensor([[3, 1, 2], [3, 0, 0]]))
        [(3, 1, 2), (3, 0, 0)]
    """
    if positions.dim() == 1:
        return positions
    if positions.shape[1] == 0:
        return None
    return [tuple(int(i) for i in row) for row in positions.tolist()]


def submodules(model: Module) -> List[Module]:
    r"""
    Every module of ``model``, itself included, each once: the modules
    ``model.modules()`` yields, in another order.

    The guards below walk the model on every call of a method; ``modules()`` builds a
    qualified name for every module it passes, which costs several times this walk
    (about 0.06 ms against 0.02 ms for MobileNetV1's 113 modules) on calls of ten
    milliseconds.

    Args:
        model (torch.nn.Module): the model.

    Returns:
        *list[torch.nn.Module]*: ``model`` first.

    Examples::

        >>> len(submodules(torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.ReLU())))
        3
    """
    found = [model]
    seen = {id(model)}
    pending = [model]
    while pending:
        for child in pending.pop()._modules.values():
            if child is not None and id(child) not in seen:
                seen.add(id(child))
                found.append(child)
                pending.append(child)
    return found


def check_layer_in_model(forward_func: Callable, layer: Any, name: str = "layer") -> None:
    r"""Checks that ``layer`` is a module and, for a module model, one of its submodules."""
    if not isinstance(layer, Module):
        raise TypeError(f"{name} must be a torch.nn.Module; got {type(layer).__name__}")
    if isinstance(forward_func, Module) and not any(m is layer for m in submodules(forward_func)):
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
    # a parameter shared by two modules is switched (and restored) twice
    switched = [
        param
        for module in submodules(model)
        for param in module._parameters.values()
        if param is not None and param.requires_grad
    ]
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
    modules = submodules(model)
    modes = [module.training for module in modules]
    params = [p for module in modules for p in module._parameters.values() if p is not None]
    buffers = [b for module in modules for b in module._buffers.values() if b is not None]
    flags = [p.requires_grad for p in params]
    grads = [p.grad for p in params]
    with torch.no_grad():
        saved = [b.clone() for b in buffers]
    try:
        yield
    finally:
        # flags are written back only where they changed: a call that changed none
        # (the usual case) pays no attribute write per module and parameter. Buffers
        # are always copied back (batch norm updates its running statistics without
        # bumping their version counters).
        for module, mode in zip(modules, modes):
            if module.training is not mode:
                module.training = mode
        with torch.no_grad():
            for buffer, value in zip(buffers, saved):
                buffer.copy_(value)
        for param, flag, grad in zip(params, flags, grads):
            if param.requires_grad is not flag:
                param.requires_grad_(flag)
            if param.grad is not grad:
                param.grad = grad
