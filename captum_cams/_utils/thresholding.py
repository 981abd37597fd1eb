#!/usr/bin/env python3
r"""Thresholding of maps, in one place: used by threshold fine-tuning (TFT),
Libra-CAM's threshold calibration, the metrics' masks and threshold sweep, and the
TFT masks of AFT.

- validation: :func:`check_fraction`, :func:`check_thresholds`,
  :func:`check_threshold_mode`;
- value thresholds ``I_t = I ⊙ 1[I ≥ t]`` (:func:`threshold_mask`) and rank
  thresholds, the ``k`` highest pixels (:func:`pixel_ranks`, :func:`top_k_mask`,
  ties by row-major index, so results are deterministic);
- kept counts: :func:`count_of_fraction`, :func:`kept_counts`;
- the masks of a sweep over candidates, as functions of (example, step) jobs:
  :func:`threshold_grid`, :func:`value_keep`, :func:`rank_keep`, :func:`sweep_keep`,
  and their binary :func:`support`;
- selection of the best candidate: :func:`first_argmax` (ties go to the first
  column, i.e. the largest mask).

Only tensors go in and out: evaluating the masked inputs is the metrics' chunked
sweep (:func:`captum_cams._utils.metric_scoring.masked_scores`).
"""

import math
import numbers
from typing import Any, Callable, Iterable, Optional, Tuple, Union

import torch
from torch import Tensor

from captum_cams._utils.batching import multiplied_rows, select_rows
from captum_cams._utils.guards import check_choice

#: The values ``threshold_mode`` accepts: value thresholds (the papers) or rank
#: thresholds, fractions of pixels kept (the authors' code).
THRESHOLD_MODES: Tuple[str, ...] = ("value", "rank")

#: ``keep(examples, steps)``: the ``B x 1 x H x W`` masks of the jobs
#: ``(examples[b], steps[b])`` of a sweep.
KeepFunction = Callable[[Tensor, Tensor], Tensor]


def check_fraction(value: float, name: str, allow_zero: bool = False) -> float:
    r"""Checks that ``value`` is a real number in ``(0, 1]`` (``[0, 1]`` if allowed)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number in [0, 1]; got {value!r}")
    low_ok = value >= 0 if allow_zero else value > 0
    if not (low_ok and value <= 1) or math.isnan(value):
        bounds = "[0, 1]" if allow_zero else "(0, 1]"
        raise ValueError(f"{name} must be in {bounds}; got {value!r}")
    return float(value)


def _is_real_number(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, Tensor):
        return value.numel() == 1 and not (value.is_complex() or value.dtype == torch.bool)
    return isinstance(value, numbers.Real)


def check_thresholds(
    thresholds: Iterable[float], allow_zero: bool = False, name: str = "thresholds"
) -> Tuple[float, ...]:
    r"""
    Checks candidate thresholds and returns them sorted ascending.

    Any iterable of real numbers is taken (a list, a tensor, a NumPy array); the
    error names the position of a value that is not a number (``TypeError``, bools
    included) or lies outside the bounds (``ValueError``, NaN included).

    Args:
        thresholds (iterable of float): at least one number in ``(0, 1]``
                    (``[0, 1]`` with ``allow_zero``).
        allow_zero (bool, optional): accept 0. Default: False
        name (str, optional): argument name used in error messages.
                    Default: ``"thresholds"``

    Returns:
        *tuple[float, ...]*: the values as floats, ascending.
    """
    bounds = "[0, 1]" if allow_zero else "(0, 1]"
    expected = f"{name} must be a sequence of numbers in {bounds}"
    if isinstance(thresholds, (str, bytes)) or not isinstance(thresholds, Iterable):
        raise TypeError(f"{expected}; got {type(thresholds).__name__}")
    try:
        items = list(thresholds)
    except TypeError:  # e.g. a 0-d tensor
        raise TypeError(f"{expected}; got {type(thresholds).__name__}") from None
    values = []
    for position, value in enumerate(items):
        if not _is_real_number(value):
            raise TypeError(f"{name}[{position}] must be a number in {bounds}; got {value!r}")
        number = float(value)
        low_ok = number >= 0 if allow_zero else number > 0
        if not (low_ok and number <= 1):  # NaN fails the test too
            raise ValueError(f"{name}[{position}] must be in {bounds}; got {value!r}")
        values.append(number)
    if len(values) == 0:
        raise ValueError(f"{name} must hold at least one value in {bounds}; got none")
    return tuple(sorted(values))


def check_threshold_mode(threshold_mode: Any) -> str:
    r"""Checks the ``threshold_mode`` option: ``"value"`` or ``"rank"``."""
    return check_choice(threshold_mode, THRESHOLD_MODES, "threshold_mode")


def count_of_fraction(fraction: float, num_pixels: int) -> int:
    r"""Number of pixels in ``fraction`` of ``num_pixels``: rounded half up."""
    return int(math.floor(fraction * num_pixels + 0.5))


def kept_counts(
    values: Iterable[float], size: Tuple[int, ...], device: Optional[torch.device] = None
) -> Tensor:
    r"""
    ``(T,)`` pixels kept, ``round(τ·H·W)`` (:func:`count_of_fraction`), per rank
    threshold ``τ`` in descending order, counted from the Python floats (not from a
    lower-precision tensor copy); ``size`` is ``(H, W)``.
    """
    num_pixels = size[-1] * size[-2]
    ordered = sorted(values, reverse=True)
    return torch.tensor([count_of_fraction(q, num_pixels) for q in ordered], device=device)


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


def threshold_grid(
    values: Iterable[float], threshold_mode: str, dtype: torch.dtype, device: torch.device
) -> Tensor:
    r"""
    ``(T,)`` candidates ordered from the largest mask to the smallest: ascending
    values, or descending fractions kept for rank thresholds.
    """
    ordered = sorted(values, reverse=threshold_mode == "rank")
    return torch.tensor(ordered, dtype=dtype, device=device)


def support(keep: KeepFunction) -> KeepFunction:
    r"""``keep(examples, steps)``'s binary support ``1[I_τ ≠ 0]`` (TFT's ``M_τ``), as a
    keep function of the same jobs."""

    def binary_keep(examples: Tensor, steps: Tensor) -> Tensor:
        kept = keep(examples, steps)
        return (kept != 0).to(kept.dtype)

    return binary_keep


def value_keep(maps: Tensor, grid: Tensor, binary: bool = False) -> KeepFunction:
    r"""``keep(examples, steps)``: :func:`threshold_mask` of ``maps`` at ``grid[step]``
    (its :func:`support` with ``binary``)."""

    def keep(examples: Tensor, steps: Tensor) -> Tensor:
        return threshold_mask(select_rows(maps, examples), grid[steps].reshape(-1, 1, 1, 1))

    return support(keep) if binary else keep


def rank_keep(maps: Tensor, counts: Tensor, binary: bool = False) -> KeepFunction:
    r"""
    ``keep(examples, steps)``: ``I ⊙ top(counts[step])``, the map on its
    ``counts[step]`` highest pixels (:func:`pixel_ranks`), or with ``binary`` its
    support ``1[I ⊙ top ≠ 0]``.
    """
    ranks = pixel_ranks(maps)
    shape = tuple(maps.shape[-2:])

    def keep(examples: Tensor, steps: Tensor) -> Tensor:
        top = top_k_mask(select_rows(ranks, examples), counts[steps], shape, maps.dtype)
        return multiplied_rows(maps, examples, top)

    return support(keep) if binary else keep


def sweep_keep(
    maps: Tensor,
    values: Iterable[float],
    threshold_mode: str,
    binary: bool = False,
    counts: Optional[Tensor] = None,
) -> Tuple[KeepFunction, Tensor]:
    r"""
    The masks of a sweep over the candidates ``values`` and its grid
    (:func:`threshold_grid`): value thresholds mask with ``I_τ = I ⊙ 1[I ≥ τ]``,
    rank thresholds with ``I_τ = I ⊙ top(τ)``, ``round(τ·H·W)`` pixels unless
    ``counts`` (``(T,)``, in the grid's order) are given; the masks are ``I_τ``, or
    ``1[I_τ ≠ 0]`` with ``binary``.

    Args:
        maps (Tensor): ``N x 1 x H x W`` maps in ``[0, 1]``.
        values (iterable of float): the checked candidates.
        threshold_mode (str): ``"value"`` or ``"rank"``.
        binary (bool, optional): binary masks. Default: False
        counts (Tensor, optional): pixels kept per rank threshold. Default: None

    Returns:
        *tuple*: ``(keep, grid)``: ``keep(examples, steps)`` and the ``(T,)`` grid.
    """
    values = tuple(values)
    grid = threshold_grid(values, threshold_mode, maps.dtype, maps.device)
    if threshold_mode == "value":
        return value_keep(maps, grid, binary), grid
    if counts is None:
        counts = kept_counts(values, tuple(maps.shape[-2:]), maps.device)
    return rank_keep(maps, counts, binary), grid


def first_argmax(values: Tensor, allow_nan: bool = False) -> Tensor:
    r"""
    ``(N,)`` column of the maximum of every row of ``values`` (``N x T``); of
    exactly equal maxima the first column. A NaN is an error, unless
    ``allow_nan``: a row holding NaN then selects its last column.
    """
    if not allow_nan and torch.isnan(values).any():
        raise ValueError("the scores contain NaN: the model returned NaN on a masked input")
    num_columns = values.shape[1]
    best = values.max(dim=1, keepdim=True).values
    columns = torch.arange(num_columns, device=values.device).expand_as(values)
    first = torch.where(values == best, columns, num_columns).min(dim=1).values
    return first.clamp(max=num_columns - 1) if allow_nan else first
