#!/usr/bin/env python3
"""The one thresholding module: validation, kept counts, rankings with ties, value
and rank masks of a sweep (soft and binary) and first-argmax selection, against
values worked out by hand on 2 x 2 and 2 x 5 maps."""

import math

import pytest
import torch

from captum_cams._utils.thresholding import (
    check_fraction,
    check_threshold_mode,
    check_thresholds,
    count_of_fraction,
    first_argmax,
    kept_counts,
    pixel_ranks,
    rank_keep,
    sweep_keep,
    threshold_grid,
    threshold_mask,
    top_k_mask,
    value_keep,
)

F64 = torch.float64


def _maps() -> torch.Tensor:
    # example 0: pixels (row-major) 0.25, 1.0, 0.5, 0.0; example 1: 1.0, 0, 0, 0
    return torch.tensor([[[[0.25, 1.0], [0.5, 0.0]]], [[[1.0, 0.0], [0.0, 0.0]]]], dtype=F64)


def test_check_thresholds_sorts_and_names_the_argument():
    assert check_thresholds([0.5, 1, 0.25]) == (0.25, 0.5, 1.0)
    assert check_thresholds((x / 4 for x in (2, 1))) == (0.25, 0.5)  # any iterable
    assert check_thresholds([0, 0.5], allow_zero=True) == (0.0, 0.5)
    with pytest.raises(ValueError, match=r"thresholds\[0\] must be in \(0, 1\]; got 0"):
        check_thresholds([0, 0.5])
    with pytest.raises(ValueError, match=r"must hold at least one value in \(0, 1\]"):
        check_thresholds([])
    with pytest.raises(ValueError, match=r"thresholds\[0\] must be in"):
        check_thresholds([math.nan])
    with pytest.raises(ValueError, match=r"grid\[0\] must be in"):
        check_thresholds([1.5], name="grid")
    with pytest.raises(TypeError, match="thresholds must be a sequence"):
        check_thresholds("0.5")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="thresholds must be a sequence"):
        check_thresholds(0.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"thresholds\[0\] must be a number"):
        check_thresholds([True])


def test_check_fraction_and_threshold_mode():
    assert check_fraction(1, "q") == 1.0
    assert check_fraction(0, "q", allow_zero=True) == 0.0
    with pytest.raises(ValueError, match=r"q must be in \[0, 1\]"):
        check_fraction(-0.1, "q", allow_zero=True)
    assert check_threshold_mode("value") == "value"
    assert check_threshold_mode("rank") == "rank"
    with pytest.raises(ValueError, match="threshold_mode must be 'value' or 'rank'; got 'top'"):
        check_threshold_mode("top")


def test_counts_round_half_up_and_come_in_descending_order():
    # 0.25 * 10 = 2.5 rounds up to 3; 0.05 * 10 = 0.5 to 1; 0.3 * 10 = 3.0000000000000004 to 3
    assert count_of_fraction(0.25, 10) == 3
    assert count_of_fraction(0.05, 10) == 1
    assert count_of_fraction(0.3, 10) == 3
    assert count_of_fraction(0.24, 10) == 2
    counts = kept_counts((0.25, 1.0, 0.5), (2, 5))
    assert counts.tolist() == [10, 5, 3]
    assert counts.dtype == torch.long


def test_ranks_break_ties_by_row_major_index():
    # values 0.5, 0.9, 0.5, 0.1: 0.9 first, then the two 0.5 in index order
    maps = torch.tensor([[[[0.5, 0.9], [0.5, 0.1]]]], dtype=F64)
    ranks = pixel_ranks(maps)
    assert ranks.tolist() == [[1, 0, 2, 3]]
    top = top_k_mask(ranks, torch.tensor([2]), (2, 2), F64)
    assert top.tolist() == [[[[1.0, 1.0], [0.0, 0.0]]]]
    assert top_k_mask(ranks, torch.tensor([0]), (2, 2), F64).sum() == 0


def test_threshold_mask_soft_and_binary():
    maps = torch.tensor([[[[0.2, 0.5], [0.0, 1.0]]]], dtype=F64)
    assert threshold_mask(maps, 0.5).tolist() == [[[[0.0, 0.5], [0.0, 1.0]]]]
    assert threshold_mask(maps, 0.5, binary=True).tolist() == [[[[0.0, 1.0], [0.0, 1.0]]]]
    # t = 0 keeps every pixel, but the binary mask is 1[I_t != 0]: the zero pixel drops
    assert threshold_mask(maps, 0.0, binary=True).tolist() == [[[[1.0, 1.0], [0.0, 1.0]]]]


def test_grids_run_from_the_largest_mask_to_the_smallest():
    values = (0.5, 1.0, 0.2)
    assert threshold_grid(values, "value", F64, torch.device("cpu")).tolist() == [0.2, 0.5, 1.0]
    assert threshold_grid(values, "rank", F64, torch.device("cpu")).tolist() == [1.0, 0.5, 0.2]


def test_value_sweep_masks():
    keep, grid = sweep_keep(_maps(), (0.6, 0.3), "value")
    assert grid.tolist() == [0.3, 0.6]
    jobs = keep(torch.tensor([0, 0, 1]), torch.tensor([0, 1, 0]))
    assert jobs.tolist() == [
        [[[0.0, 1.0], [0.5, 0.0]]],  # example 0 at 0.3
        [[[0.0, 1.0], [0.0, 0.0]]],  # example 0 at 0.6
        [[[1.0, 0.0], [0.0, 0.0]]],  # example 1 at 0.3
    ]
    binary = value_keep(_maps(), grid, binary=True)(torch.tensor([0]), torch.tensor([0]))
    assert binary.tolist() == [[[[0.0, 1.0], [1.0, 0.0]]]]


def test_rank_sweep_masks():
    # example 0 ranks: 1.0 (index 1), 0.5 (index 2), 0.25 (index 0), 0.0 (index 3);
    # fractions 0.5 and 0.25 of 4 pixels keep 2 and 1
    keep, grid = sweep_keep(_maps(), (0.25, 0.5), "rank")
    assert grid.tolist() == [0.5, 0.25]
    jobs = keep(torch.tensor([0, 0]), torch.tensor([0, 1]))
    assert jobs.tolist() == [[[[0.0, 1.0], [0.5, 0.0]]], [[[0.0, 1.0], [0.0, 0.0]]]]
    # all four pixels: the soft mask is the map, the binary one drops its zero pixel
    whole, _ = sweep_keep(_maps(), (1.0,), "rank", binary=True)
    assert whole(torch.tensor([0]), torch.tensor([0])).tolist() == [[[[1.0, 1.0], [1.0, 0.0]]]]
    # given counts replace round(τ·H·W): one pixel at the fraction 0.5
    one, _ = sweep_keep(_maps(), (0.5,), "rank", counts=torch.tensor([1]))
    assert one(torch.tensor([0]), torch.tensor([0])).tolist() == [[[[0.0, 1.0], [0.0, 0.0]]]]
    direct = rank_keep(_maps(), torch.tensor([3]))(torch.tensor([0]), torch.tensor([0]))
    assert direct.tolist() == [[[[0.25, 1.0], [0.5, 0.0]]]]


def test_first_argmax_takes_the_first_of_equal_maxima():
    values = torch.tensor([[0.1, 0.3, 0.3], [0.5, 0.2, 0.5], [0.0, 0.0, 0.0]], dtype=F64)
    assert first_argmax(values).tolist() == [1, 0, 0]
    with_nan = torch.tensor([[math.nan, 1.0], [0.2, 0.1]], dtype=F64)
    with pytest.raises(ValueError, match="NaN"):
        first_argmax(with_nan)
    # allowed, a row holding NaN matches no maximum and selects its last column
    assert first_argmax(with_nan, allow_nan=True).tolist() == [1, 0]
