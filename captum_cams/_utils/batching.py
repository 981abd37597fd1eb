#!/usr/bin/env python3
"""Row selection for batches whose rows are modified copies of the original examples."""
from typing import Any, Tuple

from torch import Tensor


def take_examples(values: Tuple[Any, ...], index: Tensor, batch_size: int) -> Tuple[Any, ...]:
    r"""
    Selects rows ``index`` of every batch-first tensor in ``values``.

    Tensors whose first dimension is ``batch_size`` are indexed; everything else
    (scalars, non-tensors, tensors of other sizes) is passed through unchanged,
    as Captum does when it expands ``additional_forward_args``.

    Args:
        values (tuple): inputs or additional forward arguments of one batch.
        index (Tensor): ``(M,)`` example index of each new row.
        batch_size (int): the number of examples of the original batch.

    Returns:
        *tuple*: the values for the ``M`` new rows.
    """
    return tuple(
        value[index.to(value.device)]
        if isinstance(value, Tensor) and value.dim() > 0 and value.shape[0] == batch_size
        else value
        for value in values
    )
