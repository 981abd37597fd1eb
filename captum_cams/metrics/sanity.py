#!/usr/bin/env python3
r"""Sanity checks of attribution methods: cascading model-parameter randomisation
(Adebayo et al., "Sanity checks for saliency maps", NeurIPS 2018; Libra-CAM's check)
and the cosine similarity of channel weights (LIFT-CAM's Table 2).
"""

import copy
from typing import Callable, Dict, List, NamedTuple, Optional, Sequence, cast

import torch
from captum._utils.typing import TargetType
from captum.log import log_usage
from torch import Tensor
from torch.nn import Module

from captum_cams._utils.batching import add_to_progress, progress_bar
from captum_cams._utils.guards import (
    check_image_batch,
    format_target,
    target_indices,
)
from captum_cams._utils.maps import as_maps


def _average_ranks(values: Tensor) -> Tensor:
    r"""1-based ranks along dim 1; tied values share the mean of their ranks."""
    values = values.contiguous()
    ordered = torch.sort(values, dim=1).values
    below = torch.searchsorted(ordered, values, right=False)
    upto = torch.searchsorted(ordered, values, right=True)
    return (below + upto + 1).to(torch.float64) / 2


def spearman_correlation(first: Tensor, second: Tensor) -> Tensor:
    r"""
    Spearman rank correlation per example (ties get average ranks, as scipy's).

    A constant map shares no ordering with anything; its correlation is 0.

    Args:
        first (Tensor): ``N x ...`` values.
        second (Tensor): ``N x ...`` values with the same number of elements per row.

    Returns:
        *Tensor*: ``(N,)`` correlations in ``[-1, 1]`` (float64).

    Examples::

        >>> spearman_correlation(torch.tensor([[1., 2., 3.]]), torch.tensor([[1., 5., 9.]]))
        tensor([1.], dtype=torch.float64)
    """
    a = first.detach().reshape(first.shape[0], -1)
    b = second.detach().reshape(second.shape[0], -1)
    if a.shape != b.shape:
        raise ValueError(
            f"maps to correlate must have the same shape; got {tuple(first.shape)} and "
            f"{tuple(second.shape)}"
        )
    ra = _average_ranks(a)
    rb = _average_ranks(b)
    ra = ra - ra.mean(1, keepdim=True)
    rb = rb - rb.mean(1, keepdim=True)
    denom = ra.norm(dim=1) * rb.norm(dim=1)
    num = (ra * rb).sum(1)
    return torch.where(denom > 0, num / torch.where(denom > 0, denom, 1), 0.0)


class CascadingRandomizationResult(NamedTuple):
    r"""
    Result of :func:`cascading_randomization`.

    Attributes:
        layers (list[str]): names of the re-initialised modules, in the order used
                    (output side first); column ``l`` has layers ``0..l`` randomised.
        correlations (Tensor): ``N x L`` Spearman correlations between the original
                    map and the map after randomising layers ``0..l``.
        original_maps (Tensor): the maps of the trained model, ``N x 1 x h x w``.

    Examples::

        >>> def grad_cam(model, inputs, target):
        ...     return LayerGradCam(model, model.conv4).attribute(inputs, target)
        >>> result = cascading_randomization(net, grad_cam, x, target=3)
        >>> result.layers, result.correlations.mean(0)
    """

    layers: List[str]
    correlations: Tensor
    original_maps: Tensor


def _default_layers(model: Module) -> List[str]:
    names = [
        name
        for name, module in model.named_modules()
        if name
        and callable(getattr(module, "reset_parameters", None))
        and any(True for _ in module.parameters(recurse=False))
    ]
    return names[::-1]


@log_usage(part_of_slo=True)
def cascading_randomization(
    model: Module,
    attribute_func: Callable[[Module, Tensor, Tensor], Tensor],
    inputs: Tensor,
    target: TargetType = None,
    layers: Optional[Sequence[str]] = None,
    seed: int = 0,
    show_progress: bool = False,
) -> CascadingRandomizationResult:
    r"""
    Cascading randomisation: re-initialise the model's layers one after the other,
    from the output towards the input, and correlate each new map with the original.
    A method whose maps stay unchanged does not depend on what the model learnt.

    Everything runs on a deep copy of ``model``; the user's model (parameters,
    buffers, modes) is untouched. Layers are re-initialised by their own
    ``reset_parameters()`` under ``torch.manual_seed(seed + l)`` inside
    ``torch.random.fork_rng``, so the global RNG state is left as it was. The maps
    are computed by ``attribute_func`` (which may need gradients, so this function
    does not run under ``no_grad``); correlations are taken at the maps' own
    resolution (ranks do not change under ``mm``).

    Args:
        model (nn.Module): the trained model.
        attribute_func (Callable): ``attribute_func(model, inputs, target)`` returns
                    ``N x (1 x) h x w`` maps for the given (copied) model, e.g.
                    ``lambda m, x, t: LayerGradCam(m, m.layer4).attribute(x, target=t)``.
        inputs (Tensor): ``N x C x H x W`` images; left unchanged.
        target (int, list[int], Tensor, optional): class per example, handed to
                    ``attribute_func`` as a ``(N,)`` tensor; None: the trained model's
                    prediction (one forward), kept for every randomised model.
                    Default: None
        layers (sequence of str, optional): module names (as in
                    ``model.named_modules()``) to re-initialise, in order. Default:
                    every module with its own parameters and a ``reset_parameters``
                    method, in reverse registration order (output side first for
                    models that register modules in forward order).
        seed (int, optional): base seed. Default: 0
        show_progress (bool, optional): a progress bar over the maps (the
                    original and one per randomised layer). Default: False

    Returns:
        *CascadingRandomizationResult*: layer names, ``N x L`` correlations and the
        original maps.

    Examples::

        >>> gradcam = lambda m, x, t: LayerGradCam(m, m.layer4).attribute(x, target=t)
        >>> result = cascading_randomization(resnet, gradcam, x, target=labels)
        >>> result.correlations.mean(0)   # should fall towards 0
    """
    if not isinstance(model, Module):
        raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}")
    if not callable(attribute_func):
        raise TypeError("attribute_func must be callable(model, inputs, target)")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int; got {type(seed).__name__}")
    check_image_batch(inputs)
    work = copy.deepcopy(model)
    modules = dict(work.named_modules())
    names = list(layers) if layers is not None else _default_layers(work)
    if not names:
        raise ValueError("layers must name at least one module to re-initialise")
    for name in names:
        if name not in modules or name == "":
            raise ValueError(f"layers: {name!r} is not a submodule name of the model")
        if not callable(getattr(modules[name], "reset_parameters", None)):
            raise ValueError(f"layers: module {name!r} has no reset_parameters()")
    x = inputs.detach()
    with progress_bar(show_progress, "cascading_randomization", unit="maps"):
        add_to_progress(total=len(names) + 1, unit="maps")
        if target is None:  # the trained model's prediction: one forward
            with torch.no_grad():
                idx = target_indices(None, work(x))
        else:
            idx = format_target(target, x.shape[0], x.device)
        original = as_maps(attribute_func(work, x, idx)).detach()
        add_to_progress(done=1, unit="maps")
        columns = _randomized_correlations(
            work, modules, names, attribute_func, x, idx, original, seed
        )
    return CascadingRandomizationResult(
        layers=names, correlations=torch.stack(columns, dim=1), original_maps=original
    )


def _randomized_correlations(
    work: Module,
    modules: Dict[str, Module],
    names: List[str],
    attribute_func: Callable[[Module, Tensor, Tensor], Tensor],
    x: Tensor,
    idx: Tensor,
    original: Tensor,
    seed: int,
) -> List[Tensor]:
    r"""The correlation of each cascade step's maps with ``original``."""
    devices = sorted(
        {
            p.device.index
            for p in work.parameters()
            if p.device.type == "cuda" and p.device.index is not None
        }
    )
    columns = []
    for step, name in enumerate(names):
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed + step)
            with torch.no_grad():
                # callable: checked by name before the cascade starts
                cast(Callable[[], None], modules[name].reset_parameters)()
        maps = as_maps(attribute_func(work, x, idx)).detach()
        columns.append(spearman_correlation(original, maps))
        add_to_progress(done=1, unit="maps")
    return columns


def coefficient_cosine_similarity(weights: Tensor, reference_weights: Tensor) -> Tensor:
    r"""
    Cosine similarity between channel-weight vectors per example (LIFT-CAM, Table 2:
    a method's weights against SHAP-CAM's or the exact Shapley values).

    A zero vector has similarity 0 with anything.

    Args:
        weights (Tensor): ``N x K`` channel weights of a method.
        reference_weights (Tensor): ``N x K`` reference weights.

    Returns:
        *Tensor*: ``(N,)`` similarities in ``[-1, 1]``.

    Examples::

        >>> maps, w = LayerLIFTCAM(net, net.layer4).attribute(x, target=3, return_weights=True)
        >>> coefficient_cosine_similarity(w, shapley_weights).mean()
    """
    for name, value in (("weights", weights), ("reference_weights", reference_weights)):
        if not isinstance(value, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor; got {type(value).__name__}")
        if value.dim() != 2:
            raise ValueError(f"{name} must be N x K; got shape {tuple(value.shape)}")
        if torch.isnan(value).any():
            raise ValueError(f"{name} contains NaN")
    if weights.shape != reference_weights.shape:
        raise ValueError(
            f"weights and reference_weights must have the same shape; got "
            f"{tuple(weights.shape)} and {tuple(reference_weights.shape)}"
        )
    with torch.no_grad():
        a = weights.detach()
        b = reference_weights.detach().to(a.dtype)
        denom = a.norm(dim=1) * b.norm(dim=1)
        num = (a * b).sum(1)
        return torch.where(denom > 0, num / torch.where(denom > 0, denom, 1), 0.0)
