#!/usr/bin/env python3
"""principal_component: the projection and its unit direction, a rank-one case whose answer
is known, and the refusal of a single position."""

import pytest
import torch
from _projection_reference import numpy_projection

from captum_cams.attr._smoothing import principal_component


def test_equals_numpys_projection_and_returns_unit_directions() -> None:
    terms = torch.randn(3, 5, 4, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    projection, direction = principal_component(terms)
    torch.testing.assert_close(projection, numpy_projection(terms), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(direction.norm(dim=1), torch.ones(3, dtype=torch.float64))


def test_rank_one_terms_project_onto_their_spatial_pattern() -> None:
    # terms_k(p) = u(p) v_k + c_k: centred rows are u_centred(p) v, so p = ±|v| u_centred
    u = torch.tensor([3.0, -1.0, 0.5, 2.0, -4.0, 1.0], dtype=torch.float64)
    v = torch.tensor([1.0, 2.0, -2.0], dtype=torch.float64)
    offsets = torch.tensor([5.0, -1.0, 0.25], dtype=torch.float64)
    terms = (v[:, None] * u[None, :] + offsets[:, None]).reshape(1, 3, 2, 3)
    projection, direction = principal_component(terms)
    centred = u - u.mean()
    expected = centred * v.norm()
    if expected.min().abs() > expected.max().abs():  # the sign rule
        expected = -expected
    torch.testing.assert_close(projection.flatten(), expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(direction[0].abs(), (v / v.norm()).abs(), rtol=1e-12, atol=1e-12)


def test_a_single_position_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 2 positions"):
        principal_component(torch.ones(1, 4, 1, 1))
