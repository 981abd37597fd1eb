#!/usr/bin/env python3
"""mm (min-max scaling) is scale-free, and up/as_maps keep their layouts."""

import pytest
import torch
import torch.nn.functional as F

from captum_cams._utils.maps import MINMAX_RELATIVE_FLOOR, minmax_normalize, upsample


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("scale", [1e-12, 1e-30, 1e12, -1.0])
def test_minmax_does_not_depend_on_the_maps_units(dtype: torch.dtype, scale: float) -> None:
    maps = torch.randn(5, 1, 7, 7, generator=torch.Generator().manual_seed(0), dtype=dtype)
    reference = minmax_normalize(maps)
    scaled = minmax_normalize(maps * scale)
    if scale < 0:  # a flipped map is 1 - the map
        reference = 1 - reference
    torch.testing.assert_close(scaled, reference, rtol=0, atol=8 * torch.finfo(dtype).eps)
    assert torch.equal(scaled.flatten(1).amax(1), torch.ones(5, dtype=dtype))


def test_maps_of_a_probability_gradient_size_are_not_flattened() -> None:
    # the former absolute floor (range clamped at 1e-7) turned this map into ~1e-5 values
    maps = torch.tensor([[[[0.0, 1e-12], [5e-13, 2.5e-13]]]])
    torch.testing.assert_close(
        minmax_normalize(maps).flatten(), torch.tensor([0.0, 1.0, 0.5, 0.25]), rtol=1e-6, atol=0
    )


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_constant_maps_give_zeros_also_after_upsampling(dtype: torch.dtype) -> None:
    # bilinear upsampling of a constant map leaves a few epsilons of rounding: that
    # is still a constant map (zeros), at any magnitude, never NaN
    for value in (0.0, 3.7e-20, 1.3, -4.1e15):
        constant = torch.full((2, 1, 7, 7), value, dtype=dtype)
        upsampled = upsample(constant, (223, 97))
        out = minmax_normalize(upsampled)
        assert torch.equal(out, torch.zeros_like(out)), value
    # a range above the floor is a map
    one = torch.tensor([[1.0, 1.0 + 64 * torch.finfo(dtype).eps]], dtype=dtype)
    assert minmax_normalize(one).tolist() == [[0.0, 1.0]]
    assert MINMAX_RELATIVE_FLOOR < 64


def test_integer_maps_are_scaled_in_the_default_dtype() -> None:
    out = minmax_normalize(torch.tensor([[0, 2, 4]]))
    assert out.dtype == torch.get_default_dtype() and out.tolist() == [[0.0, 0.5, 1.0]]


def test_upsample_is_bilinear_without_corner_alignment() -> None:
    maps = torch.rand(2, 1, 3, 4, generator=torch.Generator().manual_seed(1))
    expected = F.interpolate(maps, size=(9, 5), mode="bilinear", align_corners=False)
    assert torch.equal(upsample(maps, (9, 5)), expected)
    assert upsample(maps, (3, 4)) is maps
