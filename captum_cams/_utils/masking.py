#!/usr/bin/env python3
r"""Masks and baselines shared by every perturbation metric.

Every metric that perturbs its inputs builds them here, in one way:

    ``perturbed = keep * inputs + (1 - keep) * baseline``

where ``keep`` is an ``N x 1 x H x W`` mask (soft values in ``[0, 1]`` or binary)
made from the attribution map by :func:`build_mask` or :func:`top_k_mask`, and the
baseline comes from :func:`make_baseline` (zeros, a Gaussian blur of the input, a
constant or a user tensor). With the zero baseline this is the ``M ⊙ x`` of
``METHODS.md``.

Maps are brought to input resolution once by :func:`prepare_maps`:
``mm(up(I))``, the ``up`` and ``mm`` of ``METHODS.md``.

Thresholds, pixel rankings and kept counts come from the one thresholding module,
:mod:`captum_cams._utils.thresholding` (rankings sort by value, highest first; ties
are broken by the row-major pixel index, so results are deterministic).
"""

from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from captum_cams._utils.baselines import BaselineLike, parse_baselines
from captum_cams._utils.batching import multiplied_rows, select_rows
from captum_cams._utils.maps import as_maps, minmax_normalize, upsample
from captum_cams._utils.thresholding import (
    check_fraction,
    count_of_fraction,
    pixel_ranks,
    threshold_mask,
    top_k_mask,
)

#: Default Gaussian blur of the ``"blur"`` baseline (RISE's kernel: 11 pixels, sigma 5).
BLUR_KERNEL_SIZE: int = 11
BLUR_SIGMA: float = 5.0


def prepare_maps(
    attributions: Tensor,
    size: Sequence[int],
    batch_size: int,
    dtype: Optional[torch.dtype] = None,
    device: Optional[torch.device] = None,
    name: str = "attributions",
) -> Tensor:
    r"""
    Checks attributions and returns ``mm(up(I))`` at ``size``.

    Args:
        attributions (Tensor): ``N x h x w``, ``N x 1 x h x w`` (or ``N x C x h x w``,
                    channels summed) maps of any spatial size.
        size (tuple[int, int]): the ``(H, W)`` to upsample to.
        batch_size (int): the expected ``N``.
        dtype (torch.dtype, optional): dtype of the result. Default: the maps' dtype
                    (integer maps become the default float dtype).
        device (torch.device, optional): device of the result. Default: the maps'.
        name (str, optional): argument name used in error messages.
                    Default: ``"attributions"``.

    Returns:
        *Tensor*: detached ``N x 1 x H x W`` maps in ``[0, 1]``.
    """
    maps = as_maps(attributions, name=name).detach()
    if maps.shape[0] != batch_size:
        raise ValueError(
            f"{name} must hold one map per example ({batch_size}); got batch size {maps.shape[0]}"
        )
    if dtype is None:
        dtype = maps.dtype if maps.is_floating_point() else torch.get_default_dtype()
    maps = maps.to(dtype=dtype, device=device if device is not None else maps.device)
    if torch.isinf(maps).any():
        raise ValueError(f"{name} contains inf")
    return minmax_normalize(upsample(maps, size))


def build_mask(
    maps: Tensor,
    keep_top_fraction: Optional[float] = None,
    threshold: Optional[float] = None,
    binary: bool = False,
) -> Tensor:
    r"""
    The keep-mask of the masking metrics, from ``mm(up(I))`` maps.

    - neither option: the soft mask ``I`` itself (``1[I ≠ 0]`` when ``binary``);
    - ``threshold=t``: :func:`threshold_mask` (soft ``I ⊙ 1[I ≥ t]`` or binary);
    - ``keep_top_fraction=q``: binary mask of the ``round(q·H·W)`` highest pixels
      (ties by row-major index); ``binary`` is implied.

    Args:
        maps (Tensor): ``N x 1 x H x W`` maps in ``[0, 1]``.
        keep_top_fraction (float, optional): fraction in ``(0, 1]`` of pixels kept.
                    Default: None
        threshold (float, optional): value threshold in ``[0, 1]``. Default: None
        binary (bool, optional): binarise the soft or thresholded mask. Default: False

    Returns:
        *Tensor*: ``N x 1 x H x W`` mask, same dtype as ``maps``.
    """
    if keep_top_fraction is not None and threshold is not None:
        raise ValueError("give at most one of keep_top_fraction and threshold; got both")
    if keep_top_fraction is not None:
        fraction = check_fraction(keep_top_fraction, "keep_top_fraction")
        num_pixels = maps.shape[-1] * maps.shape[-2]
        count = count_of_fraction(fraction, num_pixels)
        counts = torch.full((maps.shape[0],), count, dtype=torch.long)
        return top_k_mask(pixel_ranks(maps), counts, tuple(maps.shape[-2:]), maps.dtype)
    if threshold is not None:
        threshold = check_fraction(threshold, "threshold", allow_zero=True)
        return threshold_mask(maps, threshold, binary=binary)
    return threshold_mask(maps, 0.0, binary=binary)


def gaussian_blur(
    inputs: Tensor, kernel_size: int = BLUR_KERNEL_SIZE, sigma: float = BLUR_SIGMA
) -> Tensor:
    r"""
    Separable Gaussian blur of an ``N x C x H x W`` batch, channel by channel,
    with replicated borders (so tiny images work too).

    Args:
        inputs (Tensor): the images.
        kernel_size (int, optional): odd kernel length. Default: 11
        sigma (float, optional): standard deviation in pixels. Default: 5.0

    Returns:
        *Tensor*: blurred images, same shape, dtype and device.

    Examples::

        >>> gaussian_blur(torch.rand(2, 3, 64, 64)).shape
        torch.Size([2, 3, 64, 64])
    """
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be a positive odd int; got {kernel_size!r}")
    if not sigma > 0:
        raise ValueError(f"sigma must be positive; got {sigma!r}")
    half = kernel_size // 2
    offsets = torch.arange(-half, half + 1, dtype=inputs.dtype, device=inputs.device)
    kernel = torch.exp(-(offsets**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    channels = inputs.shape[1]
    row = kernel.reshape(1, 1, 1, kernel_size).repeat(channels, 1, 1, 1)
    col = kernel.reshape(1, 1, kernel_size, 1).repeat(channels, 1, 1, 1)
    out = F.pad(inputs, (half, half, 0, 0), mode="replicate")
    out = F.conv2d(out, row, groups=channels)
    out = F.pad(out, (0, 0, half, half), mode="replicate")
    return F.conv2d(out, col, groups=channels)


def make_baseline(inputs: Tensor, baselines: BaselineLike, name: str = "baselines") -> Tensor:
    r"""
    The values that replace removed pixels, one per input element.

    Args:
        inputs (Tensor): ``N x C x H x W`` images.
        baselines (None, str, float or Tensor): ``None`` or ``"zero"``: zeros;
                    ``"blur"``: :func:`gaussian_blur` of the inputs; a number: that
                    constant; a tensor broadcastable to ``inputs``.
        name (str, optional): argument name used in error messages.

    Returns:
        *Tensor*: an ``N x C x H x W`` tensor (possibly an expanded view).
    """
    parsed = parse_baselines(baselines, name)
    if parsed is None or (isinstance(parsed, str) and parsed == "zero"):
        return torch.zeros_like(inputs)
    if isinstance(parsed, str):  # "blur"
        return gaussian_blur(inputs)
    if isinstance(parsed, float):
        return torch.full_like(inputs, parsed)
    assert isinstance(parsed, Tensor)
    try:
        return torch.broadcast_to(parsed.to(inputs), inputs.shape)
    except RuntimeError as exc:
        raise ValueError(
            f"{name} must be broadcastable to the inputs' shape {tuple(inputs.shape)}; "
            f"got shape {tuple(parsed.shape)}"
        ) from exc


def apply_mask(inputs: Tensor, keep: Tensor, baseline: Tensor) -> Tensor:
    r"""``keep ⊙ inputs + (1 − keep) ⊙ baseline`` (a new tensor; inputs are untouched)."""
    return keep * inputs + (1 - keep) * baseline


def sweep_baseline(inputs: Tensor, baselines: BaselineLike) -> Optional[Tensor]:
    r"""The baseline of :func:`masked_rows`: None for zeros, else :func:`make_baseline`."""
    parsed = parse_baselines(baselines)
    if parsed is None or (isinstance(parsed, str) and parsed == "zero"):
        return None
    return make_baseline(inputs, parsed)


def masked_rows(
    inputs: Tensor, examples: Tensor, keep: Tensor, baseline: Optional[Tensor]
) -> Tensor:
    r"""
    The masked copies a chunk of a metric's loop builds: ``keep ⊙ x + (1 − keep) ⊙ b``
    (:func:`apply_mask`) of the rows ``examples`` of ``inputs`` and of ``baseline``; with
    the zero baseline (``baseline=None``, see :func:`sweep_baseline`) just ``keep ⊙ x``,
    the same values without the baseline term's full-size temporaries, each copy written
    once (:func:`~captum_cams._utils.batching.multiplied_rows`).

    Args:
        inputs (Tensor): ``N x C x H x W``.
        examples (Tensor): ``(M,)`` example of each copy.
        keep (Tensor): ``M x 1 x H x W`` (or ``M x C x H x W``) masks, one per copy.
        baseline (Tensor, optional): ``N x C x H x W``; None: zeros.

    Returns:
        *Tensor*: ``M x C x H x W``.
    """
    if baseline is None:
        return multiplied_rows(inputs, examples, keep)
    return apply_mask(select_rows(inputs, examples), keep, select_rows(baseline, examples))
