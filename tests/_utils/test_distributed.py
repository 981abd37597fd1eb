#!/usr/bin/env python3
"""Sharding and gathering: one process and a 2-process gloo run give the same list; a
group the package creates is destroyed at exit even when the script does not do it."""

import json
from pathlib import Path
from typing import Callable

import pytest

from captum_cams._utils.distributed import (
    gather_by_index,
    init_distributed_from_env,
    is_main_process,
    rank_and_world_size,
    shard_indices,
)

WORKER = """
import atexit, json, os, sys
import torch.distributed as dist
from captum_cams._utils.distributed import (
    gather_by_index, init_distributed_from_env, rank_and_world_size, shard_indices)

def record_group_at_exit():  # registered first, so it runs after the package's handler
    with open(sys.argv[1] + f".{os.environ['RANK']}.at_exit", "w") as f:
        f.write(str(dist.is_initialized()))

atexit.register(record_group_at_exit)
assert init_distributed_from_env("gloo")
rank, world = rank_and_world_size()
mine = shard_indices(7)
merged = gather_by_index((i, {"square": i * i, "rank": rank}) for i in mine)
with open(sys.argv[1] + f".{rank}", "w") as f:
    json.dump({"world": world, "mine": mine, "merged": merged}, f)
"""


def test_single_process_defaults() -> None:
    assert rank_and_world_size() == (0, 1)
    assert is_main_process()
    assert not init_distributed_from_env()
    assert shard_indices(4) == [0, 1, 2, 3]
    assert gather_by_index([(2, "c"), (0, "a"), (1, "b")]) == ["a", "b", "c"]
    with pytest.raises(ValueError, match="num_items"):
        shard_indices(-1)
    with pytest.raises(ValueError, match="item 1"):
        gather_by_index([(1, "a"), (1, "b")])


def test_two_gloo_processes_gather_the_single_process_result(
    tmp_path: Path, gloo_processes: Callable[..., None]
) -> None:
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    gloo_processes(script, str(tmp_path / "out"), nproc=2)
    results = [json.loads((tmp_path / f"out.{rank}").read_text()) for rank in (0, 1)]
    assert [r["world"] for r in results] == [2, 2]
    assert results[0]["mine"] == [0, 2, 4, 6] and results[1]["mine"] == [1, 3, 5]
    expected_squares = [i * i for i in range(7)]
    for r in results:
        assert [item["square"] for item in r["merged"]] == expected_squares
        assert [item["rank"] for item in r["merged"]] == [i % 2 for i in range(7)]
    # the worker never calls destroy_process_group: the package's exit handler did
    assert [(tmp_path / f"out.{rank}.at_exit").read_text() for rank in (0, 1)] == ["False"] * 2
