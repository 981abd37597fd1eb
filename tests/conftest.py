#!/usr/bin/env python3
"""Shared fixtures: small random-weight models and the shared CIFAR-10 folder."""

import os
from pathlib import Path
from typing import Iterator

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
