#!/usr/bin/env python3
"""Shared fixtures: small random-weight models and the shared CIFAR-10 folder."""

import os
import subprocess
import sys
from pathlib import Path
from typing import Callable, Iterator

import pytest
import torch

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(autouse=True)
def _deterministic() -> Iterator[None]:
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="session")
def cifar10_root() -> Path:
    from captum_cams.datasets.cifar10 import find_cifar10_root

    root = find_cifar10_root()
    if root is None:
        pytest.skip(
            "shared CIFAR-10 folder not found: set CAPTUM_CAMS_CIFAR10 or place "
            "../shared/data/cifar10 beside the project"
        )
    return root


@pytest.fixture(scope="session")
def torchrun() -> Callable[..., None]:
    """Runs a script under ``torchrun --standalone`` (gloo on CPU) and fails with its output."""

    def run(script: Path, *args: str, nproc: int = 2, timeout: float = 300.0) -> None:
        root = Path(__file__).resolve().parents[1]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH")]))
        env["OMP_NUM_THREADS"] = "1"
        command = [
            sys.executable, "-m", "torch.distributed.run", "--standalone",
            f"--nproc_per_node={nproc}", str(script), *args,
        ]  # fmt: skip
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            pytest.fail(f"torchrun exited {done.returncode}:\n{done.stdout}\n{done.stderr}")

    return run


def damage_file(path: Path, kind: str) -> None:
    """Damages a file written by torch.save the ways a copy or a disk can: ``truncated``
    (half of it), ``tail cut`` (all but the last 10 bytes), ``third`` (the first third),
    ``one byte``, ``empty``, ``text`` (not a torch file at all)."""
    whole = path.read_bytes()
    contents = {
        "truncated": whole[: len(whole) // 2],
        "tail cut": whole[:-10],
        "third": whole[: len(whole) // 3],
        "one byte": whole[:1],
        "empty": b"",
        "text": b"epoch = 3\n",
    }
    path.write_bytes(contents[kind])


@pytest.fixture
def damage() -> Callable[[Path, str], None]:
    return damage_file
