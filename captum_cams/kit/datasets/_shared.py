#!/usr/bin/env python3
"""Where the folders shared beside the project (``../shared/data/<name>``) are found."""

import os
from pathlib import Path
from typing import List, Optional, Union

PathLike = Union[str, "os.PathLike[str]"]


def find_shared_folder(
    name: str, env_var: str, marker: str, root: Optional[PathLike] = None
) -> Optional[Path]:
    r"""
    The first candidate folder that holds ``marker``, or None.

    The candidates, in order: ``root`` alone when given; else the environment variable
    ``env_var``, ``../shared/data/<name>`` from the working directory, and the same path
    from the repository root of this package.

    Args:
        name (str): the folder's name under ``shared/data``, e.g. ``"imagenet"``.
        env_var (str): the environment variable that may name the folder.
        marker (str): a file or folder the right folder holds.
        root (str or PathLike, optional): an explicit folder. Default: None.

    Returns:
        *Path* or *None*: the folder.

    Examples::

        >>> find_shared_folder("cifar10", "CAPTUM_CAMS_CIFAR10", "test")
    """
    candidates: List[Path] = []
    if root is not None:
        candidates.append(Path(root))
    else:
        if os.environ.get(env_var):
            candidates.append(Path(os.environ[env_var]))
        candidates.append(Path.cwd().parent / "shared" / "data" / name)
        candidates.append(Path(__file__).resolve().parents[3].parent / "shared" / "data" / name)
    for candidate in candidates:
        if (candidate / marker).exists():
            return candidate
    return None
