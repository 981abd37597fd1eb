#!/usr/bin/env python3
r"""Prepares a model's head for Captum's layer-wise relevance propagation (LRP).

Captum's :class:`~captum.attr.LRP` propagates relevance through hooks on *leaf modules*
with a rule each, and passes it unchanged through everything else. On a head taken
from a real model that goes wrong in three ways: a skip connection written as ``a + b``
hands the full relevance to both summands (relevance is created, not split: on a
ResNet-style block, twice the logit, tested); a rule-bearing module called at two
sites is refused; and Captum's rules change the weights of the modules they are
attached to (``.data`` rebound, then the state dict copied back into them) for the
duration of a call.

:func:`relevance_head` rewrites the head with ``torch.fx`` so that none of this can
happen, without changing what it computes:

* every ``a + b`` of two activation-dependent tensors becomes Captum's own
  ``Addition_Module`` with the ε rule: the relevance of ``a + b`` is split in proportion
  to ``a`` and ``b`` (the z-rule), as Relevance-CAM's authors split it at ResNet's skip
  connections; at a fork the relevances of the branches add up (autograd sums them);
* every call site of a rule-bearing module (convolution, linear layer, batch-norm,
  pooling) gets its own shallow copy, whose parameters are fresh ``Parameter`` objects
  sharing the model's tensors again at every call (:meth:`RelevanceHead.rules_attached`):
  Captum's weight manipulation rebinds the copy's ``.data`` and never writes into the
  model; every ``ReLU`` (module or functional) becomes its own out-of-place module;
* functional pooling (``F.adaptive_avg_pool2d``, ``F.avg_pool2d``, ``F.max_pool2d``)
  becomes its module, and a mean over the two spatial dimensions an
  ``AdaptiveAvgPool2d(1)``; reshapes (``flatten``, ``view``, ``reshape``, …),
  concatenation, dropout (in eval mode) and identities pass relevance through;
  anything else — a product of two activation-dependent tensors, any other mean, an
  unknown module or function —
  raises :class:`UnsupportedRelevanceError` naming it.

The rules (:data:`RULES`): the z⁺ rule (Captum's ``Alpha1_Beta0_Rule`` with the bias
set to zero, which conserves relevance) on every convolution and linear layer but the
last, whose output is the model's, which gets the ε rule; batch-norm passes relevance
through (Captum's ``IdentityRule``, the authors' treatment); pooling and additions get
the ε rule (Captum's defaults).
"""

import copy
import operator
import threading
import weakref
from contextlib import contextmanager
from typing import Any, Callable, Dict, Iterator, List, Optional, Set, Tuple, Type

import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F
from captum.attr._utils.custom_modules import Addition_Module
from captum.attr._utils.lrp_rules import (
    Alpha1_Beta0_Rule,
    EpsilonRule,
    IdentityRule,
    PropagationRule,
)
from torch.nn import Module

from captum_cams.attr._head import module_structure


class UnsupportedRelevanceError(ValueError):
    r"""A head holds an operation without a relevance-propagation rule."""


#: Modules whose call sites carry a rule (a copy per site).
_WEIGHTED: Tuple[Type[Module], ...] = (nn.Conv2d, nn.Linear)
_RULE_MODULES: Tuple[Type[Module], ...] = (
    nn.Conv2d,
    nn.Linear,
    nn.BatchNorm2d,
    nn.MaxPool2d,
    nn.AvgPool2d,
    nn.AdaptiveAvgPool2d,
)
#: Modules removed from the graph (their output is their input; dropout in eval mode).
_IDENTITY_MODULES: Tuple[Type[Module], ...] = (nn.Identity, nn.Dropout)

_ADDITIONS: Set[Any] = {operator.add, operator.iadd, torch.add, "add", "add_", "__add__"}
_RELUS: Set[Any] = {F.relu, torch.relu, torch.relu_, F.relu_, "relu", "relu_"}
#: Functions and methods that move values without changing them.
_REARRANGING_FUNCTIONS: Set[Any] = {
    torch.flatten,
    torch.reshape,
    torch.squeeze,
    torch.unsqueeze,
    torch.cat,
    torch.concat,
    torch.permute,
    torch.transpose,
    operator.getitem,
}
_REARRANGING_METHODS: Set[str] = {
    "view",
    "reshape",
    "flatten",
    "squeeze",
    "unsqueeze",
    "permute",
    "transpose",
    "contiguous",
    "clone",
    "view_as",
    "size",
    "dim",
}


def _pool(
    kind: Type[Module], names: List[str]
) -> Callable[[Tuple[Any, ...], Dict[str, Any]], Module]:
    r"""Builds ``kind`` from a functional pooling call's arguments."""

    def build(args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> Module:
        bound = dict(zip(names, args[1:]))
        bound.update(kwargs)
        if bound.get("return_indices"):
            raise UnsupportedRelevanceError("a max-pool that returns indices has no relevance rule")
        return kind(**bound)

    return build


_POOL_ARGUMENTS = [
    "kernel_size",
    "stride",
    "padding",
    "ceil_mode",
    "count_include_pad",
    "divisor_override",
]
_MAX_POOL_ARGUMENTS = [
    "kernel_size",
    "stride",
    "padding",
    "dilation",
    "ceil_mode",
    "return_indices",
]
#: Functional pooling (as fx records it) and the module each call becomes.
_POOLS: Dict[Any, Callable[[Tuple[Any, ...], Dict[str, Any]], Module]] = {
    F.adaptive_avg_pool2d: _pool(nn.AdaptiveAvgPool2d, ["output_size"]),
    F.avg_pool2d: _pool(nn.AvgPool2d, _POOL_ARGUMENTS),
    F.max_pool2d: _pool(nn.MaxPool2d, _MAX_POOL_ARGUMENTS),
}


def _spatial_mean(node: fx.Node) -> Optional[bool]:
    r"""For ``x.mean((2, 3))`` / ``torch.mean(x, [-2, -1], keepdim)`` of a 4-D ``x``: its
    ``keepdim``; None for any other mean (which has no rule here)."""
    dims = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else None)
    keepdim = node.kwargs.get("keepdim", node.args[2] if len(node.args) > 2 else False)
    if not isinstance(dims, (list, tuple)) or not isinstance(keepdim, bool):
        return None
    if sorted(d % 4 if isinstance(d, int) else -1 for d in dims) != [2, 3]:
        return None
    return keepdim


def _rule_for(module: Module, is_output: bool, epsilon: float) -> PropagationRule:
    r"""The propagation rule of one call site (see the module's docstring)."""
    if isinstance(module, _WEIGHTED):
        return EpsilonRule(epsilon) if is_output else Alpha1_Beta0_Rule(set_bias_to_zero=True)
    if isinstance(module, nn.BatchNorm2d):
        return IdentityRule()
    return EpsilonRule()


def _node_name(node: fx.Node) -> str:
    target = node.target
    if callable(target):
        target = getattr(target, "__qualname__", getattr(target, "__name__", repr(target)))
    return f"{node.op} {target!r} (node {node.name!r})"


class RelevanceHead:
    r"""
    A head rewritten for Captum's LRP: the graph module and its rule-bearing sites.

    Attributes:
        module (fx.GraphModule): the rewritten head (computes what the head computes).
        sites (list): ``(copy, original or None)`` per rule-bearing call site; the
                    copy is the module in ``module``; ``original`` is the model's
                    module whose tensors it shares (None for additions).
        output_site (nn.Module or None): the convolution or linear layer whose output
                    is the model's (the ε rule); None when the head has none.

    Examples::

        >>> prepared = relevance_head(split_head(vgg, vgg.features[-1]))
        >>> with prepared.rules_attached(epsilon=1e-9):
        ...     relevance = LRP(prepared.module).attribute(activations, target=3)
    """

    def __init__(
        self,
        module: fx.GraphModule,
        sites: List[Tuple[Module, Optional[Module]]],
        output_site: Optional[Module],
    ) -> None:
        self.module = module
        self.sites = sites
        self.output_site = output_site
        self.lock = threading.Lock()

    @contextmanager
    def rules_attached(self, epsilon: float) -> Iterator[fx.GraphModule]:
        r"""
        Holds the head for one LRP call: every copy shares the model's current tensors
        again (in fresh ``Parameter`` objects, so Captum's weight rules rebind the
        copies only) and carries a fresh rule; the rules are removed on exit.
        """
        with self.lock:
            for site, original in self.sites:
                if original is not None:
                    for name, parameter in original.named_parameters(recurse=False):
                        setattr(site, name, nn.Parameter(parameter.detach(), requires_grad=False))
                    for name, buffer in original.named_buffers(recurse=False):
                        site._buffers[name] = buffer
                site.rule = _rule_for(site, site is self.output_site, epsilon)
            try:
                yield self.module
            finally:
                for site, _ in self.sites:
                    if hasattr(site, "rule"):
                        del site.rule
                    if hasattr(site, "activations"):
                        del site.activations


def _site_copy(module: Module) -> Module:
    r"""A shallow copy without hooks; its parameters are rebound per call."""
    site = copy.copy(module)
    site._parameters = dict(module._parameters)
    site._buffers = dict(module._buffers)
    site._modules = {}
    for name, value in list(vars(site).items()):
        if "hook" in name and isinstance(value, dict):
            setattr(site, name, type(value)())
    return site


def relevance_head(head: Module) -> RelevanceHead:
    r"""
    Rewrites a head for Captum's LRP (see the module's docstring).

    Args:
        head (nn.Module): maps the layer's activations to the model's outputs.

    Returns:
        *RelevanceHead*: the rewritten head, sharing ``head``'s parameters.

    Raises:
        UnsupportedRelevanceError: for an operation without a rule, a module in
        training mode, or a head that ``torch.fx`` cannot trace.

    Examples::

        >>> net = torchvision.models.resnet18().eval()
        >>> prepared = relevance_head(split_head(net, net.layer3))
        >>> prepared.output_site is not None
        True
    """
    try:
        traced = fx.symbolic_trace(head)
    except Exception as error:  # data-dependent control flow, unsupported calls
        raise UnsupportedRelevanceError(
            "Relevance-CAM must see every operation of the head to attach a relevance "
            f"rule to it, but torch.fx cannot trace {type(head).__name__}: {error}. Pass a "
            "traceable head= (for example an nn.Sequential of torch.nn modules)."
        ) from error
    graph = traced.graph
    dependent: Set[fx.Node] = set()
    for node in graph.nodes:
        if node.op == "call_method" and node.target in ("size", "dim"):
            continue
        if node.op == "call_function" and node.target is getattr:
            continue
        first = node.op == "placeholder" and not dependent
        if first or any(a in dependent for a in node.all_input_nodes):
            dependent.add(node)
    sites: List[Tuple[Module, Optional[Module]]] = []
    weighted: List[Module] = []
    count = 0

    def add_site(module: Module, original: Optional[Module]) -> str:
        nonlocal count
        name = f"relevance_site_{count}"
        count += 1
        traced.add_submodule(name, module)
        if original is not None or isinstance(module, Addition_Module):
            sites.append((module, original))
        return name

    def swap(node: fx.Node, module: Module, original: Optional[Module]) -> fx.Node:
        r"""Replaces ``node`` by a call of ``module`` (a new site) on its first argument."""
        with graph.inserting_before(node):
            site = graph.call_module(add_site(module, original), (node.args[0],))
        dependent.add(site)
        node.replace_all_uses_with(site)
        graph.erase_node(node)
        return site

    for node in list(graph.nodes):
        if node not in dependent or node.op in ("placeholder", "output", "get_attr"):
            continue
        if node.op == "call_module":
            module = traced.get_submodule(str(node.target))
            if module.training and isinstance(module, (nn.Dropout, nn.BatchNorm2d)):
                raise UnsupportedRelevanceError(
                    f"the head's {type(module).__name__} at {node.target!r} is in training "
                    "mode; call model.eval() before computing Relevance-CAM"
                )
            if getattr(module, "return_indices", False):
                raise UnsupportedRelevanceError(
                    f"the head's {type(module).__name__} at {node.target!r} returns indices; "
                    "it has no relevance rule"
                )
            if type(module) in _RULE_MODULES:
                copied = _site_copy(module)
                node.target = add_site(copied, module)
                if isinstance(module, _WEIGHTED):
                    weighted.append(copied)
            elif type(module) is nn.ReLU:
                node.target = add_site(nn.ReLU(), None)  # one out-of-place ReLU per site
            elif type(module) in _IDENTITY_MODULES:
                node.replace_all_uses_with(node.args[0])
                graph.erase_node(node)
            elif type(module) is nn.Flatten:
                with graph.inserting_before(node):
                    flat = graph.call_function(
                        torch.flatten, (node.args[0], module.start_dim, module.end_dim)
                    )
                dependent.add(flat)
                node.replace_all_uses_with(flat)
                graph.erase_node(node)
            else:
                raise UnsupportedRelevanceError(
                    f"the head holds {type(module).__name__} at {node.target!r}, which has no "
                    "relevance rule here (supported: Conv2d, Linear, BatchNorm2d, MaxPool2d, "
                    "AvgPool2d, AdaptiveAvgPool2d, ReLU, Dropout, Flatten, Identity, "
                    "additions); choose a layer after it or pass a head= without it"
                )
            continue
        target = node.target
        dependent_args = [a for a in node.all_input_nodes if a in dependent]
        if target in _ADDITIONS:
            if len(dependent_args) != 2 or len(node.args) != 2 or node.kwargs:
                raise UnsupportedRelevanceError(
                    f"{_node_name(node)} adds a constant to the activations (or takes more "
                    "than two terms); only sums of two activation-dependent tensors (skip "
                    "connections) have a relevance rule here"
                )
            with graph.inserting_before(node):
                summed = graph.call_module(add_site(Addition_Module(), None), tuple(node.args))
            dependent.add(summed)
            node.replace_all_uses_with(summed)
            graph.erase_node(node)
        elif target in _POOLS:
            module = _POOLS[target](node.args, dict(node.kwargs))
            if len(dependent_args) != 1 or node.args[0] is not dependent_args[0]:
                raise UnsupportedRelevanceError(
                    f"{_node_name(node)} has activation-dependent arguments other than its input"
                )
            swap(node, module, module)
        elif target in (torch.mean, "mean") and _spatial_mean(node) is not None:
            pool = nn.AdaptiveAvgPool2d(1)
            with graph.inserting_before(node):
                pooled = graph.call_module(add_site(pool, pool), (node.args[0],))
                result = pooled
                if not _spatial_mean(node):  # keepdim=False: N x K
                    result = graph.call_function(torch.flatten, (pooled, 1))
            dependent.update((pooled, result))
            node.replace_all_uses_with(result)
            graph.erase_node(node)
        elif target in _RELUS:
            swap(node, nn.ReLU(), None)
        elif target is F.dropout:
            training = node.kwargs.get("training", node.args[2] if len(node.args) > 2 else True)
            if training:
                raise UnsupportedRelevanceError(
                    f"{_node_name(node)} runs in training mode; put the model in eval mode"
                )
            node.replace_all_uses_with(node.args[0])
            graph.erase_node(node)
        elif target in _REARRANGING_FUNCTIONS or (
            node.op == "call_method" and target in _REARRANGING_METHODS
        ):
            continue
        else:
            raise UnsupportedRelevanceError(
                f"the head holds {_node_name(node)}, which has no relevance rule here "
                "(it is neither a supported module, a skip-connection sum, a ReLU nor a "
                "reshape); choose a layer after it or pass a head= without it"
            )
    graph.lint()
    prepared = fx.GraphModule(traced, graph, class_name="RelevanceHead")
    return RelevanceHead(prepared, sites, weighted[-1] if weighted else None)


#: head -> (module structure at rewrite time, prepared head)
_CACHE: "weakref.WeakKeyDictionary[Module, Tuple[Tuple[Tuple[str, int], ...], RelevanceHead]]" = (
    weakref.WeakKeyDictionary()
)
_CACHE_LOCK = threading.Lock()


def cached_relevance_head(head: Module) -> RelevanceHead:
    r"""
    :func:`relevance_head`, cached per head module while its module structure stays
    the same (each rewrite makes new ``GraphModule`` classes, which torch.fx keeps for
    the life of the process). Errors are not cached.

    Args:
        head (nn.Module): maps the layer's activations to the model's outputs.

    Returns:
        *RelevanceHead*: as :func:`relevance_head`.
    """
    structure = module_structure(head)
    with _CACHE_LOCK:
        entry = _CACHE.get(head)
    if entry is not None and entry[0] == structure:
        return entry[1]
    prepared = relevance_head(head)
    with _CACHE_LOCK:
        _CACHE[head] = (structure, prepared)
    return prepared


__all__ = [
    "RelevanceHead",
    "UnsupportedRelevanceError",
    "cached_relevance_head",
    "relevance_head",
]
