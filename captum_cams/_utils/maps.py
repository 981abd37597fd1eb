#!/usr/bin/env python3
"""Operations on attribution maps shared by every method and metric.

``upsample`` and ``minmax_normalize`` are the ``up(.)`` and ``mm(.)`` of
``METHODS.md``: bilinear upsampling with ``align_corners=False`` and per-sample
min-max scaling to ``[0, 1]`` that maps a constant map to zeros, never to NaN.
"""

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

#: Lower bound of the range in :func:`minmax_normalize`: a constant map gives zeros,
#: and any map with a larger range reaches exactly 1 at its maximum (so a threshold
#: of 1.0 keeps the top pixel, as the TFT and Libra-CAM grids assume).
MINMAX_EPS: float = 1e-7


def minmax_normalize(maps: Tensor, eps: float = MINMAX_EPS) -> Tensor:
    r"""
    Scales every map of a batch to ``[0, 1]`` on its own.

    Args:
        maps (Tensor): maps of shape ``N x ...``; each of the ``N`` entries is
                    scaled independently over all its remaining dimensions.
        eps (float, optional): lower bound of the range ``max - min``, so that a
                    constant map becomes all zeros instead of NaN. Default: ``1e-7``.

    Returns:
        *Tensor*: ``(maps - min) / max(max - min, eps)``, same shape, dtype and device.

    Examples::

        >>> maps = torch.tensor([[[[1.0, 3.0]]], [[[2.0, 2.0]]]])
        >>> minmax_normalize(maps).flatten(1)
        tensor([[0.0000, 1.0000],
                [0.0000, 0.0000]])
    """
    if maps.dim() < 1:
        raise ValueError("maps must have a batch dimension; got a 0-d tensor")
    flat = maps.reshape(maps.shape[0], -1)
    low = flat.min(dim=1, keepdim=True).values
    high = flat.max(dim=1, keepdim=True).values
    return ((flat - low) / (high - low).clamp_min(eps)).reshape(maps.shape)


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
