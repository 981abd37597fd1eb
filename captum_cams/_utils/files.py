#!/usr/bin/env python3
"""The one way files are written: atomically, so no reader ever sees half a file."""

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Union

PathLike = Union[str, "os.PathLike[str]"]


@contextmanager
def atomic_path(path: PathLike, make_parents: bool = True) -> Iterator[Path]:
    r"""
    A temporary path beside ``path`` that replaces ``path`` when the block succeeds.

    The temporary file (``.tmp-<name>.<random>.tmp``) lives in the destination's
    folder, so the final ``os.replace`` is atomic; it gets the permissions an ordinary
    new file would get (``0666`` minus the umask, not ``mkstemp``'s ``0600``). If the
    block raises, the temporary file is removed and ``path`` is left as it was.

    Args:
        path (str or PathLike): the destination.
        make_parents (bool, optional): create missing parent folders first.
                    Default: True.

    Returns:
        *Iterator[Path]*: the temporary path to write to.

    Examples::

        >>> with atomic_path("runs/model.pt") as temporary:
        ...     torch.save(state, temporary)
    """
    target = Path(path)
    folder = target.parent
    if make_parents:
        folder.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".tmp-{target.name}.", suffix=".tmp", dir=folder)
    os.close(handle)
    try:
        yield Path(temporary)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)
        os.replace(temporary, target)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
