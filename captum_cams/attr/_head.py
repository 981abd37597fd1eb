#!/usr/bin/env python3
"""The head of a model: the part from a layer's output to the model's output.

Methods that only need the head (Ablation-CAM, LIFT-CAM, SHAP-CAM) evaluate it many
times on modified layer activations instead of re-running the whole network. The
head is, in order of preference:

1. the module the user passes as ``head=``;
2. a ``torch.fx`` split of the model: the nodes downstream of the layer, when they
   depend on the input only through the layer's output;
3. a fallback that re-runs the whole model with a forward hook substituting the
   layer's output (always correct, but costs a full forward per evaluation; a
   ``RuntimeWarning`` naming ``head=`` says so once per method object).

Submodules that torch.fx cannot trace (``transforms.Normalize`` in front of a
network) are kept as single opaque calls, so they do not prevent the split.

Whatever the source, :meth:`LayerHead.verify` checks once that ``head(A(x))``
reproduces ``f(x)``; a mismatch is an error, never a silent wrong answer.

Tracing a ResNet-50 costs about as much as a forward pass, so fx splits are cached
per (model, layer) by :func:`cached_split_head`: weakly keyed on the model (the
entry goes with the model), one entry per layer name, and rebuilt whenever the
model's module structure (which module object sits under which name) has changed
since the split. Every :class:`LayerHead` still checks its head against the model
once, so a cached head is never trusted blindly.
"""

import inspect
import threading
import warnings
import weakref
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

import torch
import torch.fx as fx
from torch import Tensor
from torch.fx._symbolic_trace import PH
from torch.nn import Module

from captum_cams._utils.batching import take_examples

#: Relative and absolute tolerance of the one-off ``head(A) == f(x)`` check.
HEAD_CHECK_RTOL: float = 1e-4
HEAD_CHECK_ATOL: float = 1e-5


def _qualified_name(model: Module, layer: Module) -> Optional[str]:
    for name, module in model.named_modules():
        if module is layer:
            return name
    return None


class _LeafTracer(fx.Tracer):
    """
    Traces a model keeping ``layer`` (and torch's own modules) as single calls.

    A submodule whose ``forward`` torch.fx cannot trace (torchvision's
    ``transforms.Normalize`` rejects proxies, data-dependent control flow raises) is
    kept as a single opaque call instead of failing the whole trace: the nodes its
    failed trace had added are removed and one ``call_module`` node takes their
    place. At run time the opaque module runs on real tensors, so the split stays
    exact; before the layer it is not part of the head at all, after it the head
    calls it as it is (and :meth:`LayerHead.verify` checks the head as always).
    """

    def __init__(self, layer: Module) -> None:
        super().__init__()
        self.layer = layer
        self.opaque: Dict[int, Module] = {}

    def is_leaf_module(self, module: Module, qualified_name: str) -> bool:
        return (
            module is self.layer
            or id(module) in self.opaque
            or super().is_leaf_module(module, qualified_name)
        )

    def call_module(
        self,
        m: Module,
        forward: Callable[..., Any],
        args: Tuple[Any, ...],
        kwargs: Dict[str, Any],
    ) -> Any:
        if self.is_leaf_module(m, self.path_of_module(m)):
            return super().call_module(m, forward, args, kwargs)
        last = next(iter(reversed(self.graph.nodes)), None)
        stack = list(self.module_stack.items())
        calls = dict(self.num_calls)
        try:
            return super().call_module(m, forward, args, kwargs)
        except Exception:
            # Roll the tracer back to before this call, then record it as one call.
            for node in list(reversed(self.graph.nodes)):
                if node is last:
                    break
                self.graph.erase_node(node)
            self.module_stack.clear()
            self.module_stack.update(stack)
            self.num_calls.clear()
            self.num_calls.update(calls)
            self.opaque[id(m)] = m
            return super().call_module(m, forward, args, kwargs)


def _only_varargs(model: Module) -> Optional[Tuple[Any, ...]]:
    r"""
    ``(PH,)`` for a ``forward(*args, **kwargs)`` (an
    :class:`~captum_cams.OutputAdapter`): torch.fx cannot iterate a proxy of
    ``*args``, so such a model is traced with one positional input, the image
    batch. None (the signature's own arguments) for any other forward.
    """
    parameters = inspect.signature(model.forward).parameters.values()
    kinds = {parameter.kind for parameter in parameters}
    if kinds and kinds <= {inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD}:
        return (PH,)
    return None


def split_head(model: Module, layer: Module) -> Optional[fx.GraphModule]:
    r"""
    Splits off the part of ``model`` that follows ``layer`` with ``torch.fx``.

    The split succeeds when the model traces symbolically, the layer is called
    exactly once, and every node after it depends on the model's first input (the
    image batch) only through the layer's output (no skip connection around the
    layer). The model's further positional arguments (further inputs and
    ``additional_forward_args``) that the part after the layer uses, such as a
    temperature dividing the logits, become the head's further arguments, in the
    model's order and with the model's defaults: ``head(A, *args[1:])``; their
    positions are in the head's ``extra_arguments`` (None when it takes none).

    Args:
        model (nn.Module): the full model.
        layer (nn.Module): a submodule of ``model``.

    Returns:
        *GraphModule* or *None*: a module mapping the layer's output to the model's
        output, sharing the model's parameters; ``None`` when no such split exists.

    Examples::

        >>> net = torchvision.models.resnet18().eval()
        >>> head = split_head(net, net.layer4)
        >>> head(torch.zeros(1, 512, 7, 7)).shape
        torch.Size([1, 1000])
    """
    layer_name = _qualified_name(model, layer)
    if not layer_name:
        return None
    try:
        concrete = _only_varargs(model)  # fx takes a tuple for forward(*args)
        graph = _LeafTracer(layer).trace(model, concrete_args=concrete)  # type: ignore[arg-type]
    except Exception:  # models with data-dependent control flow do not trace
        return None
    layer_nodes = [n for n in graph.nodes if n.op == "call_module" and n.target == layer_name]
    if len(layer_nodes) != 1:
        return None
    layer_node = layer_nodes[0]

    placeholders = [n for n in graph.nodes if n.op == "placeholder"]
    # Nodes that depend on the image batch (the first input) through any path.
    input_dependent = set(placeholders[:1])
    for node in graph.nodes:
        if any(arg in input_dependent for arg in node.all_input_nodes):
            input_dependent.add(node)
    # Nodes downstream of the layer.
    downstream = {layer_node}
    for node in graph.nodes:
        if any(arg in downstream for arg in node.all_input_nodes):
            downstream.add(node)
    output_node = next(n for n in graph.nodes if n.op == "output")
    if output_node not in downstream:
        return None

    head_graph = fx.Graph()
    activation = head_graph.placeholder("activation")
    copied: Dict[fx.Node, fx.Node] = {layer_node: activation}
    # the model's further arguments, in order, so that head(A, *args[1:]) binds them
    for extra in placeholders[1:]:
        copied[extra] = head_graph.node_copy(extra)

    def copy_node(node: fx.Node) -> Optional[fx.Node]:
        if node in copied:
            return copied[node]
        if node in input_dependent and node not in downstream:
            return None  # a path around the layer: no clean split
        for arg in node.all_input_nodes:
            if copy_node(arg) is None:
                return None
        copied[node] = head_graph.node_copy(node, lambda n: copied[n])
        return copied[node]

    for node in graph.nodes:
        if node in downstream and node is not layer_node and node.op != "output":
            if copy_node(node) is None:
                return None
    result = output_node.args[0]
    if not isinstance(result, fx.Node) or result not in copied:
        return None
    head_graph.output(copied[result])
    used = [extra for extra in placeholders[1:] if copied[extra].users]
    if not used:
        for extra in placeholders[1:]:
            head_graph.erase_node(copied[extra])
    head_graph.lint()
    head = fx.GraphModule(model, head_graph, class_name="Head")
    # positions (in the model's arguments) the head takes after A; None: A only
    _set_extra_arguments(head, len(placeholders) - 1 if used else None)
    return head


#: (model) -> {layer name: (module structure at split time, head or None)}
_SPLIT_CACHE: "weakref.WeakKeyDictionary[Module, Dict[str, Tuple[Tuple[Tuple[str, int], ...], Optional[fx.GraphModule]]]]" = (  # noqa: E501
    weakref.WeakKeyDictionary()
)
_SPLIT_CACHE_LOCK = threading.Lock()


def _set_extra_arguments(head: fx.GraphModule, count: Optional[int]) -> None:
    # a plain attribute of the head, as Module.__setattr__ stores any value that is not a
    # tensor or a module (torch's annotation of __setattr__ admits only those two)
    object.__setattr__(head, "extra_arguments", count)


def module_structure(model: Module) -> Tuple[Tuple[str, int], ...]:
    r"""Which module object (by identity) sits under which qualified name."""
    return tuple((name, id(module)) for name, module in model.named_modules())


def cached_split_head(model: Module, layer: Module) -> Optional[fx.GraphModule]:
    r"""
    :func:`split_head`, cached per (model, layer name) while the model's module
    structure stays the same.

    The cache holds at most one head per layer name of a live model (weakly keyed
    on the model, so it never keeps a model alive); a head shares the model's
    parameters, so ``load_state_dict``, ``.to()`` and in-place updates reach it.
    Replacing a submodule changes the structure and the head is split again.

    Args:
        model (nn.Module): the full model.
        layer (nn.Module): a submodule of ``model``.

    Returns:
        *GraphModule* or *None*: as :func:`split_head`.
    """
    layer_name = _qualified_name(model, layer)
    if not layer_name:
        return None
    structure = module_structure(model)
    with _SPLIT_CACHE_LOCK:
        entry = _SPLIT_CACHE.get(model, {}).get(layer_name)
    if entry is not None and entry[0] == structure:
        return entry[1]
    head = split_head(model, layer)
    with _SPLIT_CACHE_LOCK:
        _SPLIT_CACHE.setdefault(model, {})[layer_name] = (structure, head)
    return head


class LayerThenHead(Module):
    r"""
    The head from a layer's *input*: the layer, then the head from its output.

    What the methods that evaluate only the head use with
    ``attribute_to_layer_input=True`` (Captum's layer-input semantics: the map is
    computed on the activation that goes into the layer).

    Args:
        layer (nn.Module): the layer (it must take one tensor).
        head (Callable): the head from the layer's output.

    Examples::

        >>> net = torchvision.models.resnet18().eval()
        >>> from_input = LayerThenHead(net.layer4, split_head(net, net.layer4))
        >>> from_input(torch.zeros(1, 256, 14, 14)).shape
        torch.Size([1, 1000])
    """

    def __init__(self, layer: Module, head: Callable[[Tensor], Tensor]) -> None:
        super().__init__()
        self.layer = layer
        self.head = head

    def forward(self, activations: Tensor) -> Tensor:
        return self.head(self.layer(activations))


def layer_then_head(layer: Module, head: Callable[[Tensor], Tensor]) -> Module:
    r"""
    :class:`LayerThenHead`, or for an fx head that takes the model's further
    arguments a ``GraphModule`` of the same that takes them too (explicit
    arguments, so that torch.fx can trace it again, as LIFT-CAM's DeepLIFT rewrite
    does).

    Args:
        layer (nn.Module): the layer (it must take one tensor).
        head (Callable): the head from the layer's output.

    Returns:
        *nn.Module*: maps the layer's input (and the model's further arguments the
        head takes) to the model's output.

    Examples::

        >>> head = layer_then_head(net.layer4, split_head(net, net.layer4))
    """
    count = getattr(head, "extra_arguments", None)
    if not count or not isinstance(head, fx.GraphModule):
        return LayerThenHead(layer, head)
    root = Module()
    root.layer = layer
    root.head = head
    graph = fx.Graph()
    activation = graph.placeholder("activation")
    extras = [
        graph.placeholder(node.name, default_value=node.args[0] if node.args else inspect._empty)
        for node in list(head.graph.nodes)[1 : count + 1]
    ]
    layer_output = graph.call_module("layer", (activation,))
    graph.output(graph.call_module("head", (layer_output, *extras)))
    composed = fx.GraphModule(root, graph, class_name="LayerThenHead")
    _set_extra_arguments(composed, count)
    return composed


class LayerHead:
    r"""
    Evaluates the head of a model on batches of layer activations.

    Rows of an activation batch may be modified copies of the original examples'
    activations (one row per ablated channel, per permutation, …);
    ``example_index`` tells which original example each row belongs to, which
    only the whole-model fallback needs.

    Args:
        forward_func (Callable): the model.
        layer (nn.Module): the layer whose output the head takes.
        head (nn.Module, optional): the head given by the user. Default: None
                    (split with ``torch.fx``, else fall back to a substituting hook).
        to_layer_input (bool, optional): the head takes the layer's input (the
                    layer, then the head from its output); the whole-model fallback
                    then substitutes the layer's input. Default: False.

    Examples::

        >>> head = LayerHead(model, model.layer4)
        >>> head.bind((images,), ())
        >>> logits = head(activations, torch.arange(len(images)))
    """

    def __init__(
        self,
        forward_func: Callable,
        layer: Module,
        head: Optional[Module] = None,
        to_layer_input: bool = False,
    ) -> None:
        if head is not None and not callable(head):
            raise TypeError(f"head must be an nn.Module or callable; got {type(head).__name__}")
        self.forward_func = forward_func
        self.layer = layer
        self.source = "given"
        if head is None and isinstance(forward_func, Module):
            head = cached_split_head(forward_func, layer)
            self.source = "fx"
        if head is None:
            self.source = "fallback"
        elif to_layer_input:
            head = layer_then_head(layer, head)
        self.module = head
        self.to_layer_input = to_layer_input
        self._verified = False
        self._inputs: Tuple[Tensor, ...] = ()
        self._additional_args: Tuple[Any, ...] = ()

    def bind(self, inputs: Tuple[Tensor, ...], additional_forward_args: Tuple[Any, ...]) -> None:
        r"""Remembers the current batch, which the whole-model fallback re-runs."""
        self._inputs = inputs
        self._additional_args = additional_forward_args

    def __call__(self, activations: Tensor, example_index: Tensor) -> Tensor:
        r"""
        Args:
            activations (Tensor): ``M x K x h x w`` layer activations.
            example_index (Tensor): ``(M,)`` index of the example each row came from.

        Returns:
            *Tensor*: the model's outputs, ``M x C``.

        The head may modify ``activations`` in place (an in-place ReLU right after
        the layer, as in DenseNet): pass a tensor of your own, never the captured
        activations themselves.
        """
        if self.module is not None:
            extras = self._extra_arguments(example_index)
            return self.module(activations, *extras)
        return self._substituted_forward(activations, example_index)

    def _extra_arguments(self, example_index: Tensor) -> Tuple[Any, ...]:
        r"""The model's further arguments of the rows, for an fx head that uses them."""
        count = getattr(self.module, "extra_arguments", None)
        if not count:
            return ()
        batch = self._inputs[0].shape[0]
        further = tuple(self._inputs[1:]) + tuple(self._additional_args)
        return take_examples(further[:count], example_index, batch)

    def _substituted_forward(self, activations: Tensor, example_index: Tensor) -> Tensor:
        batch = self._inputs[0].shape[0]
        inputs = take_examples(self._inputs, example_index, batch)
        args = take_examples(self._additional_args, example_index, batch)

        def substitute(_module: Module, _inp: Any, _out: Any) -> Tensor:
            return activations

        def substitute_input(_module: Module, _inp: Any) -> Tuple[Tensor]:
            return (activations,)

        if self.to_layer_input:
            handle = self.layer.register_forward_pre_hook(substitute_input)
        else:
            handle = self.layer.register_forward_hook(substitute)
        try:
            return self.forward_func(*inputs, *args)
        finally:
            handle.remove()

    def verify(self, activations: Tensor, outputs: Tensor) -> None:
        r"""
        Checks once that the head reproduces the model: ``head(A(x)) ≈ f(x)``.

        Args:
            activations (Tensor): the layer's output for the current batch.
            outputs (Tensor): the model's output for the same batch.
        """
        if self._verified:
            return
        if self.source == "fallback":
            if isinstance(self.forward_func, Module):
                reason = (
                    "the model could not be split after the layer with torch.fx (a skip "
                    "connection around the layer, or code torch.fx cannot trace)"
                )
                remedy = ""
            else:
                reason = "forward_func is a function, which torch.fx cannot split after the layer"
                remedy = (
                    "pass the model itself, wrapped in captum_cams.OutputAdapter(model) "
                    "where its output is not one tensor (e.g. Hugging Face's .logits), or "
                )
            warnings.warn(
                f"{reason}: every head evaluation re-runs the whole model with the layer's "
                f"output substituted, which is exact but slow; {remedy}pass head= (the part "
                "of the model from the layer's output to its output) to evaluate the head "
                "only",
                RuntimeWarning,
                stacklevel=7,  # verify < _weights < _attribute_cam < attribute < log
            )
            self._verified = True
            return
        with torch.no_grad():
            index = torch.arange(activations.shape[0], device=activations.device)
            # A copy: heads may work in place on their input (DenseNet's begins with
            # an in-place ReLU), and the captured activations are weighted later.
            predicted = self(activations.clone(), index)
        if not isinstance(predicted, Tensor) or predicted.shape != outputs.shape:
            raise ValueError(
                f"head ({self.source}) does not reproduce the model's output: it returns "
                f"{getattr(predicted, 'shape', type(predicted).__name__)}, the model "
                f"{tuple(outputs.shape)}"
            )
        if not bool(torch.isfinite(outputs).all()):
            raise ValueError(
                "the model's output for these inputs contains NaN or Inf (inputs too large "
                "for the model's dtype?), so no map can be computed from it"
            )
        if not torch.allclose(
            predicted.to(outputs.dtype), outputs, rtol=HEAD_CHECK_RTOL, atol=HEAD_CHECK_ATOL
        ):
            gap = (predicted.to(outputs.dtype) - outputs).abs().max().item()
            raise ValueError(
                f"head ({self.source}) does not reproduce the model's output "
                f"(max abs difference {gap:.3g}); pass the right head= for this layer, "
                "and make sure the model is in eval mode (dropout and batch-norm "
                "statistics change the output between calls in train mode)"
            )
        self._verified = True


__all__: Sequence[str] = [
    "LayerHead",
    "LayerThenHead",
    "cached_split_head",
    "layer_then_head",
    "split_head",
]
