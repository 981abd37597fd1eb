#!/usr/bin/env python3
"""Operations on attribution maps shared by every method and metric.

``upsample`` and ``minmax_normalize`` are the ``up(.)`` and ``mm(.)`` of
``METHODS.md``: bilinear upsampling with ``align_corners=False`` and per-sample
min-max scaling to ``[0, 1]`` that maps a constant map to zeros, never to NaN, and
does not depend on the maps' units (no absolute epsilon).
"""

from typing import List, Sequence, Tuple, Union

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


def check_image_size(image_size: Sequence[int], name: str = "image_size") -> Tuple[int, int]:
    r"""An image size: a pair of positive ints ``(H, W)``."""
    if len(image_size) != 2 or any(
        isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in image_size
    ):
        raise ValueError(f"{name} must be a pair of positive ints (H, W); got {image_size!r}")
    return int(image_size[0]), int(image_size[1])


def boxes_to_masks(
    boxes: Union[Tensor, Sequence[Tensor]], image_size: Sequence[int], name: str = "boxes"
) -> Tensor:
    r"""
    Turns boxes into boolean masks.

    Args:
        boxes (Tensor or list[Tensor]): ``N x 4`` boxes ``(x1, y1, x2, y2)``, one per
                    example, or a list of ``N`` tensors ``K_i x 4`` whose union is
                    an example's mask (``K_i = 0`` gives an empty mask). 0-based,
                    inclusive pixel coordinates.
        image_size (tuple[int, int]): ``(H, W)``.
        name (str, optional): argument name used in error messages.

    Returns:
        *Tensor*: ``N x 1 x H x W`` bool masks.

    Examples::

        >>> boxes_to_masks(torch.tensor([[1, 0, 2, 1]]), (3, 4))[0, 0].int()
        tensor([[0, 1, 1, 0],
                [0, 1, 1, 0],
                [0, 0, 0, 0]], dtype=torch.int32)
    """
    height, width = check_image_size(image_size)
    per_example: List[Tensor]
    if isinstance(boxes, Tensor):
        if boxes.dim() != 2 or boxes.shape[1] != 4:
            raise ValueError(
                f"{name} must be N x 4 (x1, y1, x2, y2); got shape {tuple(boxes.shape)}"
            )
        per_example = [boxes[i : i + 1] for i in range(boxes.shape[0])]
    elif isinstance(boxes, (list, tuple)):
        per_example = []
        for i, b in enumerate(boxes):
            if not isinstance(b, Tensor):
                b = torch.as_tensor(b, dtype=torch.float64)
            b = b.reshape(-1, 4) if b.numel() % 4 == 0 and b.dim() <= 2 else b
            if b.dim() != 2 or b.shape[1] != 4:
                raise ValueError(f"{name}[{i}] must be K x 4 boxes; got shape {tuple(b.shape)}")
            per_example.append(b)
    else:
        raise TypeError(f"{name} must be an N x 4 tensor or a list of K x 4 tensors")
    rows = torch.arange(height).reshape(1, height, 1)
    cols = torch.arange(width).reshape(1, 1, width)
    masks = torch.zeros(len(per_example), 1, height, width, dtype=torch.bool)
    for i, b in enumerate(per_example):
        if b.shape[0] == 0:
            continue
        b = b.detach().to("cpu", torch.float64)
        if not torch.isfinite(b).all():
            raise ValueError(f"{name} of example {i} contain NaN or inf")
        x1, y1, x2, y2 = (b[:, j].reshape(-1, 1, 1) for j in range(4))
        if bool(((x1 > x2) | (y1 > y2)).any()):
            raise ValueError(
                f"{name} of example {i} must have x1 <= x2 and y1 <= y2; got {b.tolist()}"
            )
        if bool(((x1 < 0) | (y1 < 0) | (x2 > width - 1) | (y2 > height - 1)).any()):
            raise ValueError(
                f"{name} of example {i} lie outside the {height} x {width} image "
                f"(0 <= x <= {width - 1}, 0 <= y <= {height - 1}); got {b.tolist()}"
            )
        inside = (cols >= x1) & (cols <= x2) & (rows >= y1) & (rows <= y2)
        masks[i, 0] = inside.any(dim=0)
    return masks
