#!/usr/bin/env python3
r"""``reshape_transform``: class-activation maps on layers whose output is not
``N x K x h x w`` (vision transformers' tokens, Swin's channels-last stages).

Every method takes ``reshape_transform=``, a callable from the layer's output to
``N x K x h x w``, as pytorch-grad-cam names it. The core applies it to the captured
activations and, as pytorch-grad-cam does, to the gradient taken with respect to the
layer's real output (:meth:`~captum_cams.attr._base.CamBase._capture`), so every
method that weights ``A`` and ``dy_c/dA`` works through it unchanged.

The methods that evaluate the model's head on modified activations (Ablation-,
SHAP-, LIFT-CAM) must put ``N x K x h x w`` activations back into the layer's output.
That is exact when the transform only selects and reorders the output's values (ViT's
drops the CLS token and lays the patch tokens on their grid; Swin's moves the
channels first): :func:`gather_index` finds which output value lands at each map
position by running the transform once on a tensor of position numbers, and
:func:`restore_layer_values` writes modified maps back over the layer's output, the
values the transform dropped (the CLS token) kept as they were.
"""

import math
from typing import Callable, Optional, Sequence, Tuple

import torch
from torch import Tensor

#: A callable from a layer's output to ``N x K x h x w``.
ReshapeTransform = Callable[[Tensor], Tensor]


def _grid(length: int, grid_size: Optional[Sequence[int]], name: str) -> Tuple[int, int]:
    if grid_size is not None:
        height, width = (int(v) for v in grid_size)
        if height * width != length:
            raise ValueError(
                f"grid_size {tuple(grid_size)} holds {height * width} positions; the {name} "
                f"has {length}"
            )
        return height, width
    side = math.isqrt(length)
    if side * side != length:
        raise ValueError(
            f"the {length} {name} do not form a square grid: pass grid_size=(h, w) "
            "(e.g. with functools.partial)"
        )
    return side, side


def vit_reshape_transform(
    tokens: Tensor, num_prefix_tokens: int = 1, grid_size: Optional[Sequence[int]] = None
) -> Tensor:
    r"""
    A vision transformer's tokens ``N x L x C`` as a map ``N x C x h x w``: the
    ``num_prefix_tokens`` leading tokens (the CLS token; DeiT's distillation token
    too) are dropped and the patch tokens laid on their grid, row by row (the order
    timm and torchvision give them).

    Pass it as ``reshape_transform=vit_reshape_transform`` (ViT, one CLS token, a
    square grid), or with ``functools.partial`` for other layouts. It only selects
    and reorders values, so every method works through it (the head methods put
    modified maps back with the CLS token unchanged).

    Args:
        tokens (Tensor): ``N x L x C`` tokens of a transformer block.
        num_prefix_tokens (int, optional): leading tokens that are not patches:
                    1 for ViT (CLS), 2 for DeiT's distilled models (CLS and
                    distillation), ``1 + R`` with ``R`` register tokens; timm
                    models have it as ``model.num_prefix_tokens``. Default: 1
        grid_size (tuple[int, int], optional): ``(h, w)`` of the patch grid.
                    Default: None (square)

    Returns:
        *Tensor*: ``N x C x h x w``.

    Examples::

        >>> vit = timm.create_model("vit_tiny_patch16_224").eval()
        >>> cam = LayerGradCam(vit, vit.blocks[-1].norm1,
        ...                    reshape_transform=vit_reshape_transform)
        >>> cam.attribute(torch.randn(1, 3, 224, 224), target=3).shape
        torch.Size([1, 1, 14, 14])
        >>> deit = functools.partial(vit_reshape_transform, num_prefix_tokens=2)
    """
    if not isinstance(tokens, Tensor) or tokens.dim() != 3:
        raise ValueError(
            "vit_reshape_transform takes N x L x C tokens; got "
            f"{tuple(tokens.shape) if isinstance(tokens, Tensor) else type(tokens).__name__}"
        )
    if isinstance(num_prefix_tokens, bool) or not 0 <= num_prefix_tokens < tokens.shape[1]:
        raise ValueError(
            f"num_prefix_tokens must be in [0, {tokens.shape[1]}); got {num_prefix_tokens!r}"
        )
    patches = tokens[:, num_prefix_tokens:]
    height, width = _grid(patches.shape[1], grid_size, "patch tokens")
    return patches.reshape(tokens.shape[0], height, width, tokens.shape[2]).permute(0, 3, 1, 2)


def swin_reshape_transform(features: Tensor, grid_size: Optional[Sequence[int]] = None) -> Tensor:
    r"""
    A channels-last feature map ``N x h x w x C`` (timm's Swin stages and blocks,
    ConvNeXt-style blocks) as ``N x C x h x w``; tokens ``N x L x C`` without a CLS
    token (the ``norm2`` inside timm's Swin blocks) are laid on their grid first.

    Nothing is dropped: the transform is a permutation, so every method works
    through it (LIFT-CAM's completeness included).

    Args:
        features (Tensor): ``N x h x w x C`` or ``N x L x C``.
        grid_size (tuple[int, int], optional): ``(h, w)`` for tokens. Default:
                    None (square)

    Returns:
        *Tensor*: ``N x C x h x w``.

    Examples::

        >>> swin = timm.create_model("swin_tiny_patch4_window7_224").eval()
        >>> cam = LayerGradCamPlusPlus(swin, swin.layers[-1],
        ...                            reshape_transform=swin_reshape_transform)
        >>> cam.attribute(torch.randn(1, 3, 224, 224), target=3).shape
        torch.Size([1, 1, 7, 7])
    """
    if not isinstance(features, Tensor) or features.dim() not in (3, 4):
        raise ValueError(
            "swin_reshape_transform takes N x h x w x C or N x L x C; got "
            f"{tuple(features.shape) if isinstance(features, Tensor) else type(features).__name__}"
        )
    if features.dim() == 3:
        height, width = _grid(features.shape[1], grid_size, "tokens")
        features = features.reshape(features.shape[0], height, width, features.shape[2])
    return features.permute(0, 3, 1, 2)


def check_reshape_transform(reshape_transform: object) -> Optional[ReshapeTransform]:
    r"""Checks the ``reshape_transform`` argument: None or a callable."""
    if reshape_transform is not None and not callable(reshape_transform):
        raise TypeError(
            "reshape_transform must be a callable from the layer's output to N x K x h x w "
            f"(e.g. captum_cams.vit_reshape_transform); got {type(reshape_transform).__name__}"
        )
    return reshape_transform


def reshaped(reshape_transform: ReshapeTransform, values: Tensor, what: str) -> Tensor:
    r"""
    ``reshape_transform(values)``, checked to be ``N x K x h x w`` with the same
    ``N``; the error names the transform and the shapes.

    Args:
        reshape_transform (Callable): the transform.
        values (Tensor): the layer's output (or input, or a gradient of the same shape).
        what (str): what ``values`` are, for the error message.

    Returns:
        *Tensor*: the ``N x K x h x w`` map.

    Examples::

        >>> reshaped(vit_reshape_transform, torch.zeros(2, 197, 192), "the layer's output").shape
        torch.Size([2, 192, 14, 14])
    """
    result = reshape_transform(values)
    if not isinstance(result, Tensor) or result.dim() != 4 or result.shape[0] != values.shape[0]:
        got = tuple(result.shape) if isinstance(result, Tensor) else type(result).__name__
        raise ValueError(
            f"reshape_transform must turn {what} (shape {tuple(values.shape)}) into "
            f"N x K x h x w with the same N; it returned {got}"
        )
    return result


def gather_index(reshape_transform: ReshapeTransform, values: Tensor) -> Optional[Tensor]:
    r"""
    Where each position of ``reshape_transform(values)`` comes from, when the
    transform only selects and reorders values.

    The transform runs once on a tensor of ``values``' shape that holds every
    position's own number (float64, exact); if what comes out holds only such
    numbers, each from its own example, the same for every example and each at most
    once, and the transform of ``values`` is exactly that gather of ``values``, the
    numbers are the answer.

    Args:
        reshape_transform (Callable): the transform.
        values (Tensor): ``N x …`` the layer's output.

    Returns:
        *Tensor* or *None*: ``(K·h·w,)`` positions into one example's flattened
        output (``torch.long``, on ``values.device``); None when the transform
        computes new values, mixes examples or repeats a value.

    Examples::

        >>> gather_index(vit_reshape_transform, torch.randn(2, 5, 3))[:4]  # CLS dropped
        tensor([ 3,  6,  9, 12])
    """
    num_examples = values.shape[0]
    per_example = values[0].numel()
    probe = torch.arange(num_examples * per_example, dtype=torch.float64, device=values.device)
    try:
        positions = reshape_transform(probe.reshape(values.shape))
    except Exception:  # a transform that cannot run on float64 is not a plain gather
        return None
    if (
        not isinstance(positions, Tensor)
        or positions.dtype != torch.float64
        or positions.shape[0] != num_examples
    ):
        return None
    offsets = torch.arange(num_examples, dtype=torch.float64, device=values.device)[:, None]
    relative = positions.reshape(num_examples, -1) - offsets * per_example
    if not bool((relative == relative.round()).all()):
        return None
    if not bool(((relative >= 0) & (relative < per_example)).all()):
        return None
    if not bool((relative == relative[:1]).all()):
        return None
    index = relative[0].long()
    if index.unique().numel() != index.numel():
        return None
    flat = values.reshape(num_examples, -1)
    if not torch.equal(reshape_transform(values).reshape(num_examples, -1), flat[:, index]):
        return None
    return index


def restore_layer_values(maps: Tensor, base: Tensor, index: Tensor) -> Tensor:
    r"""
    The layer's output with the positions :func:`gather_index` found replaced by
    ``maps``: the inverse of the transform on its image, the values it dropped taken
    from ``base``.

    Args:
        maps (Tensor): ``M x K x h x w`` (modified) activations.
        base (Tensor): ``M x …`` the layer's output of the same examples.
        index (Tensor): the positions from :func:`gather_index`.

    Returns:
        *Tensor*: ``M x …``, a new tensor of ``base``'s shape and dtype.

    Examples::

        >>> tokens = torch.randn(2, 5, 3)
        >>> index = gather_index(vit_reshape_transform, tokens)
        >>> maps = vit_reshape_transform(tokens)
        >>> torch.equal(restore_layer_values(maps, tokens, index), tokens)
        True
    """
    flat = base.reshape(base.shape[0], -1).clone()
    flat[:, index] = maps.reshape(maps.shape[0], -1).to(flat.dtype)
    return flat.view(base.shape)


__all__ = ["swin_reshape_transform", "vit_reshape_transform"]
