#!/usr/bin/env python3
"""Loops over a dataset that run the same in one process and under ``torchrun``.

Every dataset-wide job (reference libraries, TFT masks for AFT, benchmarks) splits its
items with :func:`shard_indices` and merges with :func:`gather_by_index`: each process
handles the items ``rank, rank + world_size, …`` and the merged result is ordered by
the item's global index, so a 2-process run returns exactly what one process returns.
Without an initialised process group everything degrades to a single process.
"""

import atexit
import os
from typing import Any, Dict, Iterable, List, Optional, Tuple

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    r"""
    Returns:
        *bool*: True when a ``torch.distributed`` process group is initialised.
    """
    return dist.is_available() and dist.is_initialized()


def rank_and_world_size() -> Tuple[int, int]:
    r"""
    Returns:
        *tuple[int, int]*: ``(rank, world_size)``; ``(0, 1)`` without a process group.
    """
    if is_distributed():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main_process() -> bool:
    r"""
    Returns:
        *bool*: True on rank 0 (and in a single process): the process that writes files
        and shows progress bars.
    """
    return rank_and_world_size()[0] == 0


def init_distributed_from_env(backend: Optional[str] = None) -> bool:
    r"""
    Joins the process group ``torchrun`` describes in the environment, if any.

    A group this call creates is destroyed when the interpreter exits, unless the
    caller destroys it first: a process that exits with a live gloo group can abort
    (``terminate called without an active exception``) while its worker threads are
    torn down after Python's finalisation has begun.

    Args:
        backend (str, optional): ``"gloo"`` or ``"nccl"``. Default: None (nccl when CUDA
                    is available, else gloo).

    Returns:
        *bool*: True when this call (or an earlier one) initialised a group of more
        than one process; False in a plain single process.
    """
    if is_distributed():
        return True
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or not dist.is_available():
        return False
    if backend is None:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend=backend)
    atexit.register(_destroy_process_group_if_initialised)
    return True


def _destroy_process_group_if_initialised() -> None:
    if is_distributed():
        dist.destroy_process_group()


def shard_indices(num_items: int) -> List[int]:
    r"""
    The global indices this process handles: ``rank, rank + world_size, …``.

    Args:
        num_items (int): the number of items of the whole job, at least 0.

    Returns:
        *list[int]*: this process's share, in increasing order.
    """
    if num_items < 0:
        raise ValueError(f"num_items must be non-negative; got {num_items}")
    rank, world_size = rank_and_world_size()
    return list(range(rank, num_items, world_size))


def gather_by_index(items: Iterable[Tuple[int, Any]]) -> List[Any]:
    r"""
    Merges every process's ``(global_index, value)`` pairs into one list, in index order.

    Every process receives the same list. Values must be picklable; tensors are moved
    to the CPU before sending.

    Args:
        items (Iterable[tuple[int, Any]]): this process's results with their indices.

    Returns:
        *list*: the values of all processes ordered by global index.

    Raises:
        ValueError: when two results claim the same index.
    """
    local = [
        (int(index), value.cpu() if isinstance(value, torch.Tensor) else value)
        for index, value in items
    ]
    if is_distributed():
        gathered: List[Optional[List[Tuple[int, Any]]]] = [None] * dist.get_world_size()
        dist.all_gather_object(gathered, local)
        merged = [pair for part in gathered for pair in (part or [])]
    else:
        merged = local
    by_index: Dict[int, Any] = {}
    for index, value in merged:
        if index in by_index:
            raise ValueError(f"two results for item {index}: the shards overlap")
        by_index[index] = value
    return [by_index[index] for index in sorted(by_index)]


def barrier() -> None:
    r"""Waits for every process (no-op in a single process)."""
    if is_distributed():
        dist.barrier()
