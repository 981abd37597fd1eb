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

Pixel rankings (:func:`pixel_ranks`) sort by value, highest first; ties are broken
by the row-major pixel index (a stable sort), so results are deterministic.
"""

import math
from typing import Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor

from captum_cams._utils.maps import as_maps, minmax_normalize, upsample

#: What ``baselines`` may be: ``None``/``"zero"``, ``"blur"``, a number or a tensor.
BaselineLike = Union[None, str, float, int, Tensor]

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


def check_fraction(value: float, name: str, allow_zero: bool = False) -> float:
    r"""Checks that ``value`` is a real number in ``(0, 1]`` (``[0, 1]`` if allowed)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number in [0, 1]; got {value!r}")
    low_ok = value >= 0 if allow_zero else value > 0
    if not (low_ok and value <= 1) or math.isnan(value):
        bounds = "[0, 1]" if allow_zero else "(0, 1]"
        raise ValueError(f"{name} must be in {bounds}; got {value!r}")
    return float(value)


def count_of_fraction(fraction: float, num_pixels: int) -> int:
    r"""Number of pixels in ``fraction`` of ``num_pixels``: rounded half up."""
    return int(math.floor(fraction * num_pixels + 0.5))


def pixel_ranks(maps: Tensor) -> Tensor:
    r"""
    Rank of every pixel of every map, ``0`` for the highest value.

    Args:
        maps (Tensor): ``N x 1 x H x W`` maps.

    Returns:
        *Tensor*: ``N x (H*W)`` long ranks; ties are ranked by row-major pixel index.
    """
    order = torch.argsort(maps.flatten(1), dim=1, descending=True, stable=True)
    return torch.argsort(order, dim=1)


def top_k_mask(ranks: Tensor, counts: Tensor, shape: Tuple[int, ...], dtype: torch.dtype) -> Tensor:
    r"""
    Binary masks of the ``counts[i]`` highest-ranked pixels of row ``i`` of ``ranks``.

    Args:
        ranks (Tensor): ``B x (H*W)`` ranks from :func:`pixel_ranks`.
        counts (Tensor): ``(B,)`` numbers of pixels to select.
        shape (tuple[int, ...]): ``(H, W)``.
        dtype (torch.dtype): dtype of the mask.

    Returns:
        *Tensor*: ``B x 1 x H x W`` mask with ones on the selected pixels.
    """
    selected = ranks < counts.to(ranks.device).unsqueeze(1)
    return selected.to(dtype).reshape(ranks.shape[0], 1, *shape)


def threshold_mask(maps: Tensor, threshold: Union[float, Tensor], binary: bool = False) -> Tensor:
    r"""
    ``I_t = I ⊙ 1[I ≥ t]`` (soft), or the binary ``M_t = 1[I_t ≠ 0]`` (TFT's mask).

    Args:
        maps (Tensor): maps in ``[0, 1]``.
        threshold (float or Tensor): the value threshold ``t``; a tensor
                    broadcastable to ``maps`` gives one threshold per map.
        binary (bool, optional): return ``M_t`` instead of ``I_t``. Default: False

    Returns:
        *Tensor*: mask of the same shape and dtype as ``maps``.
    """
    kept = maps * (maps >= threshold).to(maps.dtype)
    if binary:
        return (kept != 0).to(maps.dtype)
    return kept


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
    if baselines is None or (isinstance(baselines, str) and baselines == "zero"):
        return torch.zeros_like(inputs)
    if isinstance(baselines, str):
        if baselines == "blur":
            return gaussian_blur(inputs)
        raise ValueError(f"{name} must be 'zero', 'blur', a number or a tensor; got {baselines!r}")
    if isinstance(baselines, bool):
        raise TypeError(f"{name} must be 'zero', 'blur', a number or a tensor; got bool")
    if isinstance(baselines, (int, float)):
        return torch.full_like(inputs, float(baselines))
    if isinstance(baselines, Tensor):
        try:
            out = torch.broadcast_to(baselines.detach().to(inputs), inputs.shape)
        except RuntimeError as exc:
            raise ValueError(
                f"{name} must be broadcastable to the inputs' shape {tuple(inputs.shape)}; "
                f"got shape {tuple(baselines.shape)}"
            ) from exc
        if torch.isnan(out).any():
            raise ValueError(f"{name} contains NaN")
        return out
    raise TypeError(
        f"{name} must be 'zero', 'blur', a number or a tensor; got {type(baselines).__name__}"
    )


def apply_mask(inputs: Tensor, keep: Tensor, baseline: Tensor) -> Tensor:
    r"""``keep ⊙ inputs + (1 − keep) ⊙ baseline`` (a new tensor; inputs are untouched)."""
    return keep * inputs + (1 - keep) * baseline
