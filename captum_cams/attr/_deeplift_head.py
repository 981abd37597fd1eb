#!/usr/bin/env python3
"""Prepares a model's head for DeepLIFT: one out-of-place module per non-linearity.

Captum's :class:`~captum.attr.DeepLift` applies its Rescale rule through hooks on
non-linear *modules*. It therefore misses functional calls (``F.relu``,
``torch.sigmoid``, ``x.relu()``), fails on a module called twice (torchvision's
ResNet blocks call one ``ReLU(inplace=True)`` twice: "module is being used more than
once"), and back-propagates a plain gradient through any non-linear module it does
not list (``ReLU6``, ``Hardswish``, ``SiLU``, …), which silently breaks completeness.

:func:`deeplift_head` rewrites a head with ``torch.fx`` so that none of this can
happen, without changing what it computes:

* every call site of a non-linearity (module or functional) becomes its own fresh,
  out-of-place module of a type that :data:`RESCALE_RULES` has a rule for;
* every other operation on activation-dependent values is checked to be affine
  (convolutions, linear layers, batch-norm, pooling by averaging, reshapes, sums,
  products with constants, …);
* anything else — a product of two activation-dependent tensors (squeeze-excitation),
  an adaptive max-pool, a softmax, an unknown module or function — raises
  :class:`UnsupportedNonLinearityError` naming it. There is never a gradient fallback.

Layer normalisation is refused by default. With ``fixed_layer_norm=True`` every
``LayerNorm`` (module or ``F.layer_norm``) becomes :func:`fixed_scale_layer_norm`:
the mean is still subtracted (a linear map) but the scale ``1/sqrt(var + eps)`` is
held at its value on the input and not differentiated, which makes the layer
affine. This is allowed only where the rest of the head is affine too (ConvNeXt
after its last stage), so that the weights are gradient times activation of that
affine map and complete for it: ``sum_k alpha_k = F~_c(A) - F~_c(0)`` with ``F~`` the
head whose LayerNorm scales are held at their values on ``A``; ``F~(A) = F(A)``, and
``F~(0) = F(0)`` whenever each LayerNorm sees an input at the zero reference that is
constant over its normalised dimensions (ConvNeXt's classifier LayerNorm, which
sees the average-pooled activations, sees 0).

The DeepLIFT rules themselves (the Rescale table, the fixed-scale LayerNorm and
:class:`RescaleDeepLift`) are in :mod:`captum_cams.attr._deeplift_rules`.
"""

import copy
import operator
import threading
import weakref
from typing import Any, Callable, Dict, List, Optional, Set, Tuple, Type

import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F
from torch.nn import Module

from captum_cams.attr._deeplift_rules import (
    RESCALE_RULES,
    FixedScaleLayerNorm,
    fixed_scale_layer_norm,
)
from captum_cams.attr._head import module_structure


class UnsupportedNonLinearityError(ValueError):
    r"""A head holds an operation that DeepLIFT's Rescale rule cannot treat exactly."""


#: Modules that are affine maps of their input (in eval mode for the stochastic ones).
_AFFINE_MODULES: Tuple[Type[Module], ...] = (
    nn.Identity,
    nn.Linear,
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
    nn.ConvTranspose1d,
    nn.ConvTranspose2d,
    nn.ConvTranspose3d,
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AvgPool3d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveAvgPool3d,
    nn.Flatten,
    nn.Unflatten,
    nn.ZeroPad2d,
    nn.ConstantPad1d,
    nn.ConstantPad2d,
    nn.ConstantPad3d,
    nn.modules.batchnorm._BatchNorm,
    nn.modules.dropout._DropoutNd,
    nn.AlphaDropout,
    nn.FeatureAlphaDropout,
)

#: Modules whose behaviour depends on ``training``; they are affine in eval mode only.
_MODE_DEPENDENT: Tuple[Type[Module], ...] = (
    nn.modules.batchnorm._BatchNorm,
    nn.modules.dropout._DropoutNd,
    nn.AlphaDropout,
    nn.FeatureAlphaDropout,
)


def _factory(
    kind: Type[Module], names: List[str], defaults: Dict[str, Any], keep: List[str]
) -> Callable[[Tuple[Any, ...], Dict[str, Any]], Module]:
    """Builds ``kind(**kept arguments)`` from a functional call's arguments."""

    def build(args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> Module:
        bound = dict(defaults)
        bound.update(zip(names, args[1:]))
        bound.update(kwargs)
        if bound.get("return_indices"):
            raise UnsupportedNonLinearityError(
                "a max-pool that returns indices has no DeepLIFT rule"
            )
        return kind(**{name: bound[name] for name in keep if name in bound})

    return build


_POOL_NAMES = ["kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices"]

#: Functional non-linearities (as fx records them) and the module each becomes.
_FUNCTIONAL: Dict[Any, Callable[[Tuple[Any, ...], Dict[str, Any]], Module]] = {}
for _fn in (F.relu, torch.relu, torch.relu_, F.relu_, "relu", "relu_"):
    _FUNCTIONAL[_fn] = _factory(nn.ReLU, [], {}, [])
for _fn in (F.relu6,):
    _FUNCTIONAL[_fn] = _factory(nn.ReLU6, [], {}, [])
for _fn in (F.hardtanh, F.hardtanh_):
    _FUNCTIONAL[_fn] = _factory(
        nn.Hardtanh,
        ["min_val", "max_val"],
        {"min_val": -1.0, "max_val": 1.0},
        ["min_val", "max_val"],
    )
for _fn in (F.leaky_relu, F.leaky_relu_):
    _FUNCTIONAL[_fn] = _factory(
        nn.LeakyReLU, ["negative_slope"], {"negative_slope": 0.01}, ["negative_slope"]
    )
for _fn in (F.elu, F.elu_):
    _FUNCTIONAL[_fn] = _factory(nn.ELU, ["alpha"], {"alpha": 1.0}, ["alpha"])
for _fn in (F.silu, "silu"):
    _FUNCTIONAL[_fn] = _factory(nn.SiLU, [], {}, [])
for _fn in (F.hardswish,):
    _FUNCTIONAL[_fn] = _factory(nn.Hardswish, [], {}, [])
for _fn in (F.hardsigmoid,):
    _FUNCTIONAL[_fn] = _factory(nn.Hardsigmoid, [], {}, [])
for _fn in (F.mish,):
    _FUNCTIONAL[_fn] = _factory(nn.Mish, [], {}, [])
for _fn in (F.gelu, "gelu"):
    _FUNCTIONAL[_fn] = _factory(nn.GELU, [], {"approximate": "none"}, ["approximate"])
for _fn in (F.sigmoid, torch.sigmoid, "sigmoid"):
    _FUNCTIONAL[_fn] = _factory(nn.Sigmoid, [], {}, [])
for _fn in (F.tanh, torch.tanh, "tanh"):
    _FUNCTIONAL[_fn] = _factory(nn.Tanh, [], {}, [])
for _fn in (F.softplus,):
    _FUNCTIONAL[_fn] = _factory(
        nn.Softplus,
        ["beta", "threshold"],
        {"beta": 1.0, "threshold": 20.0},
        ["beta", "threshold"],
    )
_FUNCTIONAL[F.max_pool1d] = _factory(nn.MaxPool1d, _POOL_NAMES, {}, _POOL_NAMES[:-1])
_FUNCTIONAL[F.max_pool2d] = _factory(nn.MaxPool2d, _POOL_NAMES, {}, _POOL_NAMES[:-1])
_FUNCTIONAL[F.max_pool3d] = _factory(nn.MaxPool3d, _POOL_NAMES, {}, _POOL_NAMES[:-1])


def _stochastic_depth_target() -> Optional[Callable]:
    try:
        from torchvision.ops.stochastic_depth import stochastic_depth
    except ImportError:  # torchvision is optional here
        return None
    return stochastic_depth


#: Functions (and tensor methods) that are affine in every activation-dependent argument.
_AFFINE_FUNCTIONS: Set[Any] = {
    operator.add,
    operator.sub,
    operator.neg,
    operator.pos,
    operator.getitem,
    torch.add,
    torch.sub,
    torch.neg,
    torch.flatten,
    torch.cat,
    torch.concat,
    torch.stack,
    torch.reshape,
    torch.squeeze,
    torch.unsqueeze,
    torch.transpose,
    torch.permute,
    torch.mean,
    torch.sum,
    torch.chunk,
    torch.split,
    F.adaptive_avg_pool1d,
    F.adaptive_avg_pool2d,
    F.adaptive_avg_pool3d,
    F.avg_pool1d,
    F.avg_pool2d,
    F.avg_pool3d,
    F.linear,
    F.conv1d,
    F.conv2d,
    F.conv3d,
    F.pad,
}
_AFFINE_METHODS: Set[str] = {
    "add",
    "sub",
    "neg",
    "view",
    "reshape",
    "flatten",
    "squeeze",
    "unsqueeze",
    "permute",
    "transpose",
    "contiguous",
    "mean",
    "sum",
    "expand",
    "expand_as",
    "view_as",
    "clone",
    "chunk",
    "split",
    "size",
    "dim",
    "__getitem__",
    "float",
    "double",
    "to",
    "type_as",
}
#: Products: affine when at most one factor (the numerator, for a division) depends on
#: the activations.
_PRODUCTS: Set[Any] = {
    operator.mul,
    operator.truediv,
    torch.mul,
    torch.div,
    operator.matmul,
    torch.matmul,
    "mul",
    "div",
    "matmul",
    "__mul__",
    "__truediv__",
}
#: Functions with a ``training`` flag: affine only when it is False.
_TRAINING_FLAG: Dict[Any, int] = {F.dropout: 2, F.batch_norm: 5}


_LAYER_NORM_ADVICE = (
    "pass fixed_layer_norm=True (LayerNorm scales held at their values on the "
    "activations; only where the rest of the head is affine), choose a layer after "
    "it, or pass a head= without it"
)


def _node_name(node: fx.Node) -> str:
    target = node.target
    if callable(target):
        target = getattr(target, "__qualname__", getattr(target, "__name__", repr(target)))
    return f"{node.op} {target!r} (node {node.name!r})"


def _flag(node: fx.Node, position: int, name: str, default: bool) -> Any:
    if name in node.kwargs:
        return node.kwargs[name]
    if len(node.args) > position:
        return node.args[position]
    return default


def _is_shape_query(node: fx.Node) -> bool:
    if node.op == "call_method" and node.target in ("size", "dim"):
        return True
    return (
        node.op == "call_function"
        and node.target is getattr
        and node.args[1:2] in (("shape",), ("ndim",))
    )


def _fresh_copy(module: Module) -> Module:
    r"""An independent out-of-place copy of a non-linear module, sharing its parameters."""
    if type(module) is nn.ReLU:
        return nn.ReLU()
    fresh = copy.deepcopy(module)
    for hooks in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks"):
        getattr(fresh, hooks, {}).clear()
    for name, parameter in module.named_parameters(recurse=False):
        setattr(fresh, name, parameter)
    if hasattr(fresh, "inplace"):
        setattr(fresh, "inplace", False)  # noqa: B010 (not every module declares it)
    return fresh


def deeplift_head(head: Module, fixed_layer_norm: bool = False) -> Tuple[fx.GraphModule, bool]:
    r"""
    Rewrites a head so that Captum's DeepLift applies an exact Rescale rule to every
    non-linearity in it, and tells whether the head is affine.

    The head is traced with ``torch.fx`` (torch's own modules stay single calls).
    Every non-linear call site — a module of :data:`RESCALE_RULES` or its functional
    form (``F.relu``, ``torch.relu``, ``x.relu()``, ``F.max_pool2d``, …) — becomes a
    fresh out-of-place module of its own; every other activation-dependent operation
    must be affine. The result computes exactly what ``head`` computes (same
    parameters, same operations); only the module structure differs.

    Args:
        head (nn.Module): maps the layer's activations to the model's outputs.
        fixed_layer_norm (bool, optional): turn every LayerNorm into
                    :func:`fixed_scale_layer_norm` (affine, scale held fixed)
                    instead of refusing it; the rest of the head must then be
                    affine. Default: False.

    Returns:
        (*GraphModule*, *bool*): the rewritten head (sharing ``head``'s parameters),
        and True when it holds no non-linearity at all (then DeepLIFT with a zero
        reference equals gradient times activation).

    Raises:
        UnsupportedNonLinearityError: for an operation without an exact rule (a
        product of two activation-dependent tensors, as in squeeze-excitation; an
        adaptive max-pool; softmax; an unknown module or function), or a head that
        ``torch.fx`` cannot trace.

    Examples::

        >>> net = torchvision.models.resnet18().eval()
        >>> head = split_head(net, net.layer4[0])
        >>> prepared, is_affine = deeplift_head(head)
        >>> is_affine
        False
    """
    try:
        traced = fx.symbolic_trace(head)
    except Exception as error:  # data-dependent control flow, unsupported calls
        raise UnsupportedNonLinearityError(
            "LIFT-CAM must see every operation of the head to apply DeepLIFT's rules, "
            f"but torch.fx cannot trace {type(head).__name__}: {error}. Pass a "
            "traceable head= (for example an nn.Sequential of torch.nn modules)."
        ) from error
    graph = traced.graph
    # Nodes whose value depends on the activations; shapes (x.size(), x.dim(),
    # x.shape, x.ndim) do not, so ``x.view(x.size(0), x.size(1) * x.size(2))`` stays
    # affine and timm's ``torch._assert(x.ndim == 4, ...)`` is no operation on them.
    dependent: Set[fx.Node] = set()
    for node in graph.nodes:
        if _is_shape_query(node):
            continue
        # the first placeholder is the activations; further ones (the model's
        # arguments used after the layer) are held fixed, as constants
        first = node.op == "placeholder" and not dependent
        if first or any(a in dependent for a in node.all_input_nodes):
            dependent.add(node)
    stochastic_depth = _stochastic_depth_target()
    count = 0
    is_affine = True
    layer_norms: List[fx.Node] = []

    def add_site(module: Module) -> str:
        nonlocal count
        name = f"deeplift_site_{count}"
        count += 1
        traced.add_submodule(name, module)
        return name

    def own_input(node: fx.Node, value: Any) -> Any:
        # Captum's DeepLift hooks the *tensor* a non-linear module receives; a tensor
        # that also feeds other operations would hand the hook their gradients too.
        # A clone per site makes the module its only consumer.
        if not isinstance(value, fx.Node):
            return value
        with graph.inserting_before(node):
            return graph.call_method("clone", (value,))

    for node in list(graph.nodes):
        if node not in dependent or node.op in ("placeholder", "output", "get_attr"):
            continue
        if node.op == "call_module":
            module = traced.get_submodule(str(node.target))
            if type(module) in RESCALE_RULES:
                if getattr(module, "return_indices", False):
                    raise UnsupportedNonLinearityError(
                        f"the head's {type(module).__name__} at {node.target!r} returns "
                        "indices; a max-pool that returns indices has no DeepLIFT rule"
                    )
                node.target = add_site(_fresh_copy(module))
                node.args = (own_input(node, node.args[0]),) + tuple(node.args[1:])
                is_affine = False
            elif isinstance(module, _AFFINE_MODULES):
                continue
            elif type(module) is nn.LayerNorm:
                if not fixed_layer_norm:
                    raise UnsupportedNonLinearityError(
                        f"the head holds LayerNorm at {node.target!r}, which DeepLIFT's "
                        f"Rescale rule cannot treat exactly; {_LAYER_NORM_ADVICE}"
                    )
                node.target = add_site(FixedScaleLayerNorm(module))
                layer_norms.append(node)
            else:
                raise UnsupportedNonLinearityError(
                    f"the head holds {type(module).__name__} at {node.target!r}, which "
                    "DeepLIFT's Rescale rule cannot treat exactly (supported "
                    "non-linearities: "
                    f"{', '.join(sorted(k.__name__ for k in RESCALE_RULES))}); choose "
                    "a layer after it or pass a head= without it"
                )
            continue
        target = node.target
        dependent_args = [a for a in node.all_input_nodes if a in dependent]
        if target in _FUNCTIONAL:
            try:
                module = _FUNCTIONAL[target](node.args, dict(node.kwargs))
            except TypeError as error:
                raise UnsupportedNonLinearityError(
                    f"cannot turn {_node_name(node)} into a module: {error}"
                ) from error
            if len(dependent_args) != 1 or node.args[0] is not dependent_args[0]:
                raise UnsupportedNonLinearityError(
                    f"{_node_name(node)} has activation-dependent arguments other than its input"
                )
            with graph.inserting_before(node):
                site = graph.call_module(add_site(module), (own_input(node, node.args[0]),))
            dependent.add(site)
            node.replace_all_uses_with(site)
            graph.erase_node(node)
            is_affine = False
        elif target in _PRODUCTS:
            if len(dependent_args) > 1 or (
                target in (operator.truediv, torch.div, "div", "__truediv__")
                and node.args[0] not in dependent
            ):
                raise UnsupportedNonLinearityError(
                    f"{_node_name(node)} multiplies (or divides) two activation-dependent "
                    "tensors (as squeeze-excitation does); that is not an element-wise "
                    "non-linearity and DeepLIFT's Rescale rule does not apply. Choose a "
                    "layer after it"
                )
        elif target in _TRAINING_FLAG:
            if _flag(node, _TRAINING_FLAG[target], "training", target is F.dropout):
                raise UnsupportedNonLinearityError(
                    f"{_node_name(node)} runs in training mode; put the model in eval mode"
                )
        elif target is F.layer_norm:
            if not fixed_layer_norm:
                raise UnsupportedNonLinearityError(
                    f"the head holds {_node_name(node)}, which DeepLIFT's Rescale rule "
                    f"cannot treat exactly; {_LAYER_NORM_ADVICE}"
                )
            if len(dependent_args) != 1 or node.args[0] is not dependent_args[0]:
                raise UnsupportedNonLinearityError(
                    f"{_node_name(node)} has activation-dependent arguments other than its input"
                )
            node.target = fixed_scale_layer_norm
            layer_norms.append(node)
        elif stochastic_depth is not None and target is stochastic_depth:
            if _flag(node, 3, "training", True):
                raise UnsupportedNonLinearityError(
                    f"{_node_name(node)} runs in training mode; put the model in eval mode"
                )
        elif target in _AFFINE_FUNCTIONS or (
            node.op == "call_method" and target in _AFFINE_METHODS
        ):
            continue
        else:
            raise UnsupportedNonLinearityError(
                f"the head holds {_node_name(node)}, which is neither affine nor an "
                "element-wise non-linearity with a DeepLIFT rule"
            )
    if layer_norms and not is_affine:
        raise UnsupportedNonLinearityError(
            f"fixed_layer_norm=True holds the LayerNorm scales at their values on the "
            f"activations, which is exact only where the rest of the head is affine; "
            f"this head also holds non-linearities after the layer "
            f"({', '.join(n.name for n in layer_norms)} are its LayerNorms). Choose a "
            "layer after the last non-linearity or pass a head= without it"
        )
    graph.lint()
    prepared = fx.GraphModule(traced, graph, class_name="DeepLiftHead")
    return prepared, is_affine


def check_eval_mode(head: Module) -> None:
    r"""Raises when a mode-dependent module (batch-norm, dropout) of ``head`` is training."""
    for name, module in head.named_modules():
        if isinstance(module, _MODE_DEPENDENT) and module.training:
            raise ValueError(
                f"the head's {type(module).__name__} {name!r} is in training mode; "
                "call model.eval() before computing LIFT-CAM"
            )


#: (head) -> {fixed_layer_norm: (module structure at rewrite time, rewritten head, is affine)}
_PREPARED_CACHE: "weakref.WeakKeyDictionary[Module, Dict[bool, Tuple[Tuple[Tuple[str, int], ...], fx.GraphModule, bool]]]" = (  # noqa: E501
    weakref.WeakKeyDictionary()
)
_PREPARED_CACHE_LOCK = threading.Lock()


def cached_deeplift_head(
    head: Module, fixed_layer_norm: bool = False
) -> Tuple[fx.GraphModule, bool]:
    r"""
    :func:`deeplift_head`, cached per head module while its module structure stays
    the same.

    Every rewrite makes new ``GraphModule`` classes, whose generated code torch.fx
    keeps for the life of the process; building LIFT-CAM per batch would grow memory
    without this cache. Weakly keyed on ``head`` (the fx split of a model is itself
    cached, so the same head object comes back for the same model and layer); a
    head whose submodules were replaced is rewritten again. Errors are not cached.

    Args:
        head (nn.Module): maps the layer's activations to the model's outputs.
        fixed_layer_norm (bool, optional): as :func:`deeplift_head`. Default: False.

    Returns:
        (*GraphModule*, *bool*): as :func:`deeplift_head`.
    """
    structure = module_structure(head)
    with _PREPARED_CACHE_LOCK:
        entry = _PREPARED_CACHE.get(head, {}).get(fixed_layer_norm)
    if entry is not None and entry[0] == structure:
        return entry[1], entry[2]
    prepared, is_affine = deeplift_head(head, fixed_layer_norm)
    with _PREPARED_CACHE_LOCK:
        _PREPARED_CACHE.setdefault(head, {})[fixed_layer_norm] = (structure, prepared, is_affine)
    return prepared, is_affine


__all__ = [
    "UnsupportedNonLinearityError",
    "cached_deeplift_head",
    "check_eval_mode",
    "deeplift_head",
]
