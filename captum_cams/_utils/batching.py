#!/usr/bin/env python3
"""Batches whose rows are modified copies of the original examples: row selection and
the one chunked evaluation loop."""

from typing import Any, Callable, Optional, Tuple

import torch
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


def evaluate_in_chunks(
    evaluate: Callable[[Tensor], Tensor],
    num_rows: int,
    chunk_size: Optional[int],
    device: torch.device,
) -> Tensor:
    r"""
    The one chunked evaluation loop: ``evaluate`` on consecutive row ranges.

    Every method and metric that evaluates many modified copies of a batch (ablated
    channels, masked inputs, thresholds, insertion steps, …) goes through here, so
    at most ``chunk_size`` rows exist at a time and results land in one buffer.

    Args:
        evaluate (Callable): maps a ``LongTensor`` of row indices to a tensor whose
                    first dimension has one entry per row.
        num_rows (int): the number of rows, at least 1.
        chunk_size (int, optional): rows per call; ``None`` evaluates all at once.
        device (torch.device): where the row indices live.

    Returns:
        *Tensor*: the results of all rows, in row order.
    """
    if num_rows < 1:
        raise ValueError(f"num_rows must be at least 1; got {num_rows}")
    chunk = chunk_size or num_rows
    results: Optional[Tensor] = None
    for start in range(0, num_rows, chunk):
        rows = torch.arange(start, min(start + chunk, num_rows), device=device)
        values = evaluate(rows)
        if results is None:  # one buffer, in the dtype and device of the results
            results = values.new_empty((num_rows, *values.shape[1:]))
        results[start : start + rows.shape[0]] = values
    assert results is not None
    return results
