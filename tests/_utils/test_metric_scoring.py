#!/usr/bin/env python3
"""The metrics' chunked scoring: the scores of the inputs and of their perturbed copies are
the model's own, in any chunking, extra arguments follow their examples, and inside
shared_passes the inputs' outputs are taken instead of evaluated again."""

from typing import Optional

import pytest
import torch
import torch.nn as nn
from torch import Tensor

from captum_cams._utils.metric_scoring import (
    joint_logits,
    original_scores,
    perturbed_scores,
    shared_passes,
)


class _Counting(nn.Module):
    r"""A linear classifier over the flattened image, times a per-example scale."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(2 * 3 * 3, 4).double()
        self.rows = 0

    def forward(self, x: Tensor, scale: Optional[Tensor] = None) -> Tensor:
        self.rows += x.shape[0]
        out = self.fc(x.flatten(1))
        return out if scale is None else out * scale[:, None]


def _inputs() -> Tensor:
    return torch.randn(3, 2, 3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(4))


@pytest.mark.parametrize("chunk", [None, 1, 2, 7])
def test_original_scores_are_the_models_in_any_chunking(chunk: object) -> None:
    model, x = _Counting(), _inputs()
    y, idx, every = original_scores(model, x, [1, 0, 3], None, chunk, "probability")
    expected = torch.softmax(model.fc(x.flatten(1)), dim=1)
    torch.testing.assert_close(every, expected, rtol=1e-12, atol=1e-15)
    assert idx.tolist() == [1, 0, 3]
    torch.testing.assert_close(y, expected[[0, 1, 2], [1, 0, 3]], rtol=1e-12, atol=1e-15)
    _, predicted, _ = original_scores(model, x, None, None, chunk, "logit")
    assert predicted.tolist() == model.fc(x.flatten(1)).argmax(1).tolist()


def test_perturbed_copies_carry_their_examples_extra_arguments() -> None:
    model, x = _Counting(), _inputs()
    scale = torch.tensor([1.0, 2.0, -3.0], dtype=torch.float64)

    def build(examples: Tensor, steps: Tensor) -> Tensor:
        return x[examples] * (steps + 1).to(x.dtype)[:, None, None, None]

    target = torch.tensor([0, 1, 2])
    got = perturbed_scores(model, x, 2, build, target, (scale,), 4, "logit")
    for n in range(3):
        for step in range(2):
            logits = model.fc((x[n] * (step + 1)).flatten()) * scale[n]
            torch.testing.assert_close(got[n, step], logits[target[n]], rtol=1e-12, atol=1e-15)
    with pytest.raises(ValueError, match=r"^additional_forward_args\[0\] has 2 rows"):
        perturbed_scores(model, x, 2, build, target, (scale[:2],), 4, "logit")


def test_joint_logits_put_the_inputs_in_column_0() -> None:
    model, x = _Counting(), _inputs()

    def build(examples: Tensor, steps: Tensor) -> Tensor:
        return torch.zeros_like(x[examples]) + steps.to(x.dtype)[:, None, None, None]

    logits, idx = joint_logits(model, x, None, None, 5, 1, build)
    assert logits.shape == (3, 2, 4)
    torch.testing.assert_close(logits[:, 0], model.fc(x.flatten(1)), rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(
        logits[:, 1], model.fc(torch.zeros(3, 18, dtype=torch.float64)), rtol=1e-12, atol=1e-15
    )
    assert idx.tolist() == logits[:, 0].argmax(1).tolist()


def test_shared_passes_take_the_remembered_outputs() -> None:
    model, x = _Counting(), _inputs()
    with torch.no_grad():
        outputs = model(x)
    model.rows = 0
    with shared_passes() as shared:
        shared.remember_outputs(model, x, outputs)
        y, _, _ = original_scores(model, x, [2, 2, 2], None, None, "logit")
    assert model.rows == 0  # no pass: the remembered outputs were used
    torch.testing.assert_close(y, outputs[:, 2])
    original_scores(model, x, [2, 2, 2], None, None, "logit")
    assert model.rows == 3  # outside the scope the model runs again
