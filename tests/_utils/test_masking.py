#!/usr/bin/env python3
"""The shared masking module: masks, ranks, pixel counts and baselines."""

import pytest
import torch

from captum_cams._utils.masking import (
    apply_mask,
    build_mask,
    count_of_fraction,
    make_baseline,
    masked_rows,
    pixel_ranks,
    prepare_maps,
)


def test_ranks_and_top_fraction_ties_by_index():
    maps = torch.tensor([[[[1.0, 3.0], [3.0, 0.0]]]])
    assert pixel_ranks(maps).tolist() == [[2, 0, 1, 3]]
    assert build_mask(maps, keep_top_fraction=0.25)[0, 0].tolist() == [[0, 1], [0, 0]]
    assert build_mask(maps, keep_top_fraction=0.5)[0, 0].tolist() == [[0, 1], [1, 0]]


def test_counts_round_half_up():
    assert [count_of_fraction(f, 4) for f in (0.125, 0.15, 0.375, 1.0)] == [1, 1, 2, 4]
    assert count_of_fraction(0.025, 50176) == 1254


def test_threshold_and_binary_masks():
    maps = torch.tensor([[[[0.0, 0.25], [0.625, 0.875]]]])
    assert build_mask(maps)[0, 0].tolist() == maps[0, 0].tolist()
    assert build_mask(maps, threshold=0.5)[0, 0].tolist() == [[0.0, 0.0], [0.625, 0.875]]
    assert build_mask(maps, threshold=0.5, binary=True)[0, 0].tolist() == [[0, 0], [1, 1]]
    assert build_mask(maps, binary=True)[0, 0].tolist() == [[0, 1], [1, 1]]


def test_prepare_maps_shapes_and_dtype():
    out = prepare_maps(torch.tensor([[[1.0, 3.0]]]), (1, 4), 1, dtype=torch.float64)
    assert out.shape == (1, 1, 1, 4) and out.dtype == torch.float64
    assert out.min() == 0 and out.max() == 1
    with pytest.raises(ValueError, match="attributions contains inf"):
        prepare_maps(torch.tensor([[[1.0, float("inf")]]]), (1, 2), 1)


def test_baselines():
    x = torch.arange(8.0).reshape(1, 2, 2, 2)
    assert torch.equal(make_baseline(x, None), torch.zeros_like(x))
    assert torch.equal(make_baseline(x, "zero"), torch.zeros_like(x))
    assert torch.equal(make_baseline(x, 2), torch.full_like(x, 2.0))
    per_channel = make_baseline(x, torch.tensor([1.0, -1.0]).reshape(1, 2, 1, 1))
    assert per_channel[0, :, 0, 0].tolist() == [1.0, -1.0]
    keep = torch.tensor([[[[1.0, 0.0], [0.5, 0.0]]]])
    out = apply_mask(x, keep, torch.full_like(x, 10.0))
    assert out[0, 0].tolist() == [[0.0, 10.0], [6.0, 10.0]]
    with pytest.raises(TypeError, match="baselines"):
        make_baseline(x, True)


def test_masked_rows_masks_the_chosen_rows_against_their_own_baseline():
    torch.manual_seed(0)
    x = torch.randn(3, 2, 4, 4, dtype=torch.float64)
    base = torch.randn(3, 2, 4, 4, dtype=torch.float64)
    examples = torch.tensor([2, 0, 2])
    keep = torch.rand(3, 1, 4, 4, dtype=torch.float64)
    expected = apply_mask(x[examples], keep, base[examples])
    torch.testing.assert_close(masked_rows(x, examples, keep, base), expected, rtol=0, atol=0)
    # no baseline: zeros, i.e. keep times the rows
    torch.testing.assert_close(
        masked_rows(x, examples, keep, None), keep * x[examples], rtol=0, atol=0
    )
