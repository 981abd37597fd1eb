#!/usr/bin/env python3
"""The one ``baselines`` parser: each form it accepts, the names a caller allows,
the finiteness option and the errors, which name the argument."""

import math

import pytest
import torch

from captum_cams._utils.baselines import parse_baselines


def test_each_form_in_its_normal_form():
    assert parse_baselines(None) is None
    assert parse_baselines("zero") == "zero"
    assert parse_baselines("blur") == "blur"
    value = parse_baselines(2)
    assert value == 2.0 and isinstance(value, float)
    given = torch.ones(1, 3, 1, 1, requires_grad=True)
    parsed = parse_baselines(given)
    assert isinstance(parsed, torch.Tensor)
    assert not parsed.requires_grad and torch.equal(parsed, torch.ones(1, 3, 1, 1))


def test_names_are_the_callers():
    with pytest.raises(
        ValueError, match="baselines must be 'zero', 'blur', a number or a tensor; got 'mean'"
    ):
        parse_baselines("mean")
    with pytest.raises(ValueError, match="^start must be 'zero', a number or a tensor; got 'blur'"):
        parse_baselines("blur", name="start", names=("zero",))
    # a caller without named baselines: a string is the wrong type
    with pytest.raises(TypeError, match="baselines must be None, a number or a tensor; got str"):
        parse_baselines("zero", names=())


def test_type_errors():
    with pytest.raises(TypeError, match="a number or a tensor; got bool"):
        parse_baselines(True)
    with pytest.raises(TypeError, match="a number or a tensor; got list"):
        parse_baselines([0.0])  # type: ignore[arg-type]


def test_finiteness():
    # NaN in a tensor is always refused; a non-finite number only with finite=True
    with pytest.raises(ValueError, match="baselines contains NaN"):
        parse_baselines(torch.tensor([0.0, math.nan]))
    assert math.isinf(parse_baselines(math.inf))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="baselines must be a finite number; got inf"):
        parse_baselines(math.inf, finite=True)
    with pytest.raises(ValueError, match=r"baselines contains -Inf \(1 of 2"):
        parse_baselines(torch.tensor([0.0, -math.inf]), finite=True)
    assert torch.equal(parse_baselines(torch.tensor([1, 2]), finite=True), torch.tensor([1, 2]))
