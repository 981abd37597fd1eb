#!/usr/bin/env python3
"""Operations on attribution maps shared by every method and metric.

``upsample`` and ``minmax_normalize`` are the ``up(.)`` and ``mm(.)`` of
``METHODS.md``: bilinear upsampling with ``align_corners=False`` and per-sample
min-max scaling to ``[0, 1]`` that maps a constant map to zeros, never to NaN, and
does not depend on the maps' units (no absolute epsilon).
"""

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

#: A map is constant, and :func:`minmax_normalize` gives it zeros, when its range
#: ``max - min`` is at most this many machine epsilons of its magnitude
#: ``max(|min|, |max|)``. Relative, so the result does not depend on the map's units
#: (``mm(a) == mm(1e-12 * a)``); 16 absorbs the rounding of bilinear upsampling, which
#: turns a constant map into one whose range is up to about 3 epsilons of its value.
MINMAX_RELATIVE_FLOOR: float = 16.0


def minmax_normalize(maps: Tensor) -> Tensor:
    r"""
    Scales every map of a batch to ``[0, 1]`` on its own: ``mm`` of ``METHODS.md``.

    Scale-free: ``(a - min) / (max - min)``, with no absolute epsilon, so a map and
    the same map times ``1e-12`` give the same result (the gradient of a probability
    of ``1e-9`` makes maps of that size). A map whose range is within rounding of
    its magnitude (:data:`MINMAX_RELATIVE_FLOOR` machine epsilons, e.g. a constant
    map after upsampling) is constant and becomes all zeros, never NaN. Any other
    map reaches exactly 0 at its minimum and 1 at its maximum.

    Args:
        maps (Tensor): maps of shape ``N x ...``; each of the ``N`` entries is
                    scaled independently over all its remaining dimensions.
                    Integer maps are scaled in the default floating-point dtype.

    Returns:
        *Tensor*: the scaled maps, same shape, dtype (floating) and device.

    Examples::

        >>> maps = torch.tensor([[[[1.0, 3.0]]], [[[2.0, 2.0]]]])
        >>> minmax_normalize(maps).flatten(1)
        tensor([[0., 1.],
                [0., 0.]])
        >>> torch.equal(minmax_normalize(maps * 1e-12), minmax_normalize(maps))
        True
    """
    if maps.dim() < 1:
        raise ValueError("maps must have a batch dimension; got a 0-d tensor")
    if not maps.is_floating_point():
        maps = maps.to(torch.get_default_dtype())
    flat = maps.reshape(maps.shape[0], -1)
    if flat.shape[1] == 0:
        return maps.clone()
    low = flat.min(dim=1, keepdim=True).values
    high = flat.max(dim=1, keepdim=True).values
    span = high - low
    magnitude = torch.maximum(low.abs(), high.abs())
    constant = span <= magnitude * (MINMAX_RELATIVE_FLOOR * torch.finfo(maps.dtype).eps)
    scaled = (flat - low) / torch.where(constant, torch.ones_like(span), span)
    return scaled.masked_fill(constant, 0.0).reshape(maps.shape)


def upsample(maps: Tensor, size: Sequence[int]) -> Tensor:
    r"""
    Bilinear upsampling of ``N x C x h x w`` maps to ``size`` (``align_corners=False``).

    Args:
        maps (Tensor): maps of shape ``N x C x h x w``.
        size (sequence of two ints): the target ``(H, W)``.

    Returns:
        *Tensor*: maps of shape ``N x C x H x W``; returned unchanged when they
        already have that size.

    Examples::

        >>> upsample(torch.ones(2, 1, 4, 4), (8, 8)).shape
        torch.Size([2, 1, 8, 8])
    """
    if maps.dim() != 4:
        raise ValueError(f"maps must be a 4-D tensor (N, C, h, w); got shape {tuple(maps.shape)}")
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps
    return F.interpolate(maps, size=tuple(size), mode="bilinear", align_corners=False)


def as_maps(attributions: Tensor, name: str = "attributions") -> Tensor:
    r"""
    Brings attributions to the canonical ``N x 1 x h x w`` layout.

    Accepts ``N x h x w`` (a channel axis is added) and ``N x C x h x w``
    (channels are summed, as Captum's visualisation does for multi-channel
    attributions).

    Args:
        attributions (Tensor): the maps to check.
        name (str, optional): the argument name used in error messages.
                    Default: ``"attributions"``.

    Returns:
        *Tensor*: a view or a reduction of ``attributions`` of shape ``N x 1 x h x w``.
    """
    if not isinstance(attributions, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor; got {type(attributions).__name__}")
    if attributions.dim() == 3:
        attributions = attributions.unsqueeze(1)
    elif attributions.dim() == 4:
        if attributions.shape[1] != 1:
            attributions = attributions.sum(dim=1, keepdim=True)
    else:
        raise ValueError(
            f"{name} must be N x h x w or N x C x h x w; got shape {tuple(attributions.shape)}"
        )
    if torch.isnan(attributions).any():
        raise ValueError(f"{name} contains NaN")
    return attributions
