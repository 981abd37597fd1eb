#!/usr/bin/env python3
"""Argument guards: the target without a forward, parameter flags around a capture."""

import pytest
import torch
import torch.nn as nn

from captum_cams._utils.guards import (
    check_additional_forward_args,
    check_finite,
    check_image_batch,
    format_target,
    parameters_without_grad,
    target_indices,
)


def test_format_target_agrees_with_target_indices() -> None:
    outputs = torch.randn(3, 5)
    for target in (2, [0, 4, 1], torch.tensor([1, 1, 3]), torch.tensor(4), torch.tensor([2])):
        torch.testing.assert_close(
            format_target(target, 3, torch.device("cpu")), target_indices(target, outputs)
        )
    with pytest.raises(ValueError, match="one int per example"):
        format_target([1, 2], 3, torch.device("cpu"))
    with pytest.raises(TypeError, match="integer tensor"):
        format_target(torch.tensor([1.0, 2.0, 0.0]), 3, torch.device("cpu"))
    with pytest.raises(ValueError, match="needs a target"):
        format_target(None, 3, torch.device("cpu"))


def test_parameters_without_grad_restores_mixed_flags_on_error() -> None:
    model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2))
    model[0].weight.requires_grad_(False)
    before = [p.requires_grad for p in model.parameters()]
    with pytest.raises(RuntimeError, match="inside"):
        with parameters_without_grad(model):
            assert not any(p.requires_grad for p in model.parameters())
            raise RuntimeError("inside")
    assert [p.requires_grad for p in model.parameters()] == before
    with parameters_without_grad(len):  # not a module: left alone, no error
        pass


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32, torch.float64])
@pytest.mark.parametrize(
    "values, found",
    [
        ([float("nan"), 0.0], "NaN"),
        ([float("inf"), 0.0], r"\+Inf"),
        ([-float("inf"), 0.0], "-Inf"),
        ([float("inf"), -float("inf")], r"\+Inf and -Inf"),
    ],
)
def test_check_finite_names_the_argument_and_what_it_holds(
    dtype: torch.dtype, values: list, found: str
) -> None:
    tensor = torch.tensor(values, dtype=dtype)
    with pytest.raises(ValueError, match=rf"^my_arg contains {found} \(\d of 2 values\)"):
        check_finite(tensor, "my_arg")
    batch = torch.zeros(1, 1, 1, 2, dtype=dtype)
    batch[0, 0, 0] = tensor
    with pytest.raises(ValueError, match=rf"^images contains {found}"):
        check_image_batch(batch, "images")


def test_check_finite_passes_finite_and_integer_tensors() -> None:
    for tensor in (torch.zeros(3), torch.arange(4), torch.tensor([1e38], dtype=torch.float32)):
        assert check_finite(tensor, "x") is tensor


def test_additional_forward_args_follow_captums_rows_rule() -> None:
    # one row per example, or one row for all; scalars and non-tensors pass
    check_additional_forward_args((torch.zeros(2, 5), torch.zeros(1, 3), torch.tensor(4.0), 7), 2)
    check_additional_forward_args(None, 2)
    with pytest.raises(
        ValueError, match=r"^additional_forward_args\[1\] has 3 rows \(shape \(3, 4\)\)"
    ):
        check_additional_forward_args((torch.zeros(2), torch.zeros(3, 4)), 2)
