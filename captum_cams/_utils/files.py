#!/usr/bin/env python3
"""The one way files are written: atomically, so no reader ever sees half a file.

A write goes to a temporary file beside the destination, named
``.tmp-<name>.<host>.<pid>.<random>.tmp`` after the writing process, and is renamed
into place when complete. A process killed mid-write leaves its temporary file
behind; the next atomic write into that folder removes the temporaries whose
writer (same host, that pid) is no longer running.
"""

import hashlib
import os
import pickle
import re
import socket
import tempfile
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, List, Sequence, Tuple, Union

import torch

PathLike = Union[str, "os.PathLike[str]"]

#: A temporary file of :func:`atomic_path`: ``.tmp-<name>.<host>.<pid>.<random>.tmp``.
_TEMPORARY = re.compile(r"^\.tmp-.+\.(?P<host>[A-Za-z0-9-]+)\.(?P<pid>\d+)\.[A-Za-z0-9_]+\.tmp$")


def _host_tag() -> str:
    r"""This machine's name in a form that cannot contain the pattern's dots."""
    return re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname()) or "host"


def _is_running(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True  # someone else's live process (or a pid we cannot ask about)
    return True


def remove_stale_temporaries(folder: PathLike) -> List[Path]:
    r"""
    Removes the temporary files an interrupted :func:`atomic_path` left in ``folder``.

    Only files named like this module's temporaries, written on this host by a
    process that is no longer running, are removed: a write in progress (in this
    or any live process, or on another machine sharing the folder) is never
    touched.

    Args:
        folder (str or PathLike): the folder to clean.

    Returns:
        *list[Path]*: the files removed.

    Examples::

        >>> remove_stale_temporaries("runs")
        [PosixPath('runs/.tmp-model.pt.myhost.4242.k2j3h4.tmp')]
    """
    removed: List[Path] = []
    host = _host_tag()
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        match = _TEMPORARY.match(entry.name)
        if match is None or match["host"] != host or _is_running(int(match["pid"])):
            continue
        try:
            if entry.is_file(follow_symlinks=False):
                os.remove(entry.path)
                removed.append(Path(entry.path))
        except OSError:
            pass  # another process cleaned it first, or it is not ours to remove
    return removed


def _check_folder(target: Path, make_parents: bool) -> None:
    r"""Makes (or checks) the destination's folder, with an error naming the file."""
    folder = target.parent
    for above in (folder, *folder.parents):
        if above.exists() and not above.is_dir():
            raise NotADirectoryError(
                f"cannot write {os.fspath(target)}: {os.fspath(above)} is a file, not a folder"
            )
        if above.exists():
            break
    if not folder.is_dir():
        if not make_parents:
            raise FileNotFoundError(
                f"cannot write {os.fspath(target)}: the folder {os.fspath(folder)} does not "
                "exist (create it first)"
            )
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise type(error)(
                f"cannot write {os.fspath(target)}: cannot create the folder "
                f"{os.fspath(folder)} ({error.strerror or error})"
            ) from None
    if target.is_dir():
        raise IsADirectoryError(f"cannot write {os.fspath(target)}: it is a folder")


@contextmanager
def atomic_path(path: PathLike, make_parents: bool = True) -> Iterator[Path]:
    r"""
    A temporary path beside ``path`` that replaces ``path`` when the block succeeds.

    The temporary file (``.tmp-<name>.<host>.<pid>.<random>.tmp``) lives in the
    destination's folder, so the final ``os.replace`` is atomic; it gets the
    permissions an ordinary new file would get (``0666`` minus the umask, not
    ``mkstemp``'s ``0600``). If the block raises, the temporary file is removed and
    ``path`` is left as it was. Temporaries left in the folder by writers that were
    killed (see :func:`remove_stale_temporaries`) are removed first.

    Args:
        path (str or PathLike): the destination.
        make_parents (bool, optional): create missing parent folders first.
                    Default: True.

    Returns:
        *Iterator[Path]*: the temporary path to write to.

    Raises:
        FileNotFoundError: the folder is missing and ``make_parents`` is False.
        NotADirectoryError: the folder, or a folder above it, is a file.
        IsADirectoryError: ``path`` is a folder.
        PermissionError: the folder cannot be created or written to.

    Examples::

        >>> with atomic_path("runs/model.pt") as temporary:
        ...     torch.save(state, temporary)
    """
    target = Path(path)
    folder = target.parent
    _check_folder(target, make_parents)
    remove_stale_temporaries(folder)
    try:
        handle, temporary = tempfile.mkstemp(
            prefix=f".tmp-{target.name}.{_host_tag()}.{os.getpid()}.", suffix=".tmp", dir=folder
        )
    except OSError as error:
        raise type(error)(
            f"cannot write {os.fspath(target)}: cannot create a file in {os.fspath(folder)} "
            f"({error.strerror or error})"
        ) from None
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


def load_weights_only(path: PathLike, what: str) -> Any:
    r"""
    ``torch.load(path, map_location="cpu", weights_only=True)``, with one clear
    error naming the file for each way a file can fail to be what was asked for.

    Nothing in the file is executed: a pickle of other objects is refused.

    Args:
        path (str or PathLike): the file.
        what (str): what the file should be, for the messages (e.g.
                    ``"reference library"``).

    Returns:
        *Any*: what the file holds (tensors, containers and plain values).

    Raises:
        FileNotFoundError: there is no such file.
        IsADirectoryError: ``path`` is a folder.
        ValueError: the file is empty, truncated, not a torch file, or holds
        objects that cannot be loaded safely.

    Examples::

        >>> state = load_weights_only("calm.pt", "CALM checkpoint")
    """
    name = os.fspath(path)
    if os.path.isdir(name):
        raise IsADirectoryError(f"{what} {name} is a folder, not a file")
    if not os.path.isfile(name):
        raise FileNotFoundError(f"{what} not found: {name}")
    if os.path.getsize(name) == 0:
        raise ValueError(f"{name} is empty, not a {what} (an interrupted copy?)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "Detected pickle protocol ..."
            return torch.load(name, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        text = str(error)
        if "Unsupported operand" in text:  # not torch.save's format: garbage or a raw pickle
            raise ValueError(
                f"{name} is not a readable {what}: not a file written by torch.save (a raw "
                "pickle or other data; nothing in it was run)"
            ) from None
        if "weights only" in text.lower():
            raise ValueError(
                f"{name} is not a {what} that can be loaded safely: it holds objects other "
                "than tensors and plain values (refused by torch.load(weights_only=True))"
            ) from None
        raise ValueError(f"{name} is not a readable {what} (not a torch file)") from None
    except (RuntimeError, EOFError, OSError, KeyError, ValueError, IndexError, TypeError) as error:
        first = (str(error).strip().splitlines() or [type(error).__name__])[0][:120]
        raise ValueError(
            f"{name} is not a readable {what}: truncated, damaged or not a torch file ({first})"
        ) from None


#: Dataset items hashed by :func:`dataset_fingerprint` (evenly spaced, first and last).
SAMPLED_ITEMS = 8


def hash_tensors(named: Sequence[Tuple[str, Any]]) -> str:
    r"""
    SHA-256 over the names, dtypes, shapes and bytes of tensors (any dtype, any
    device); values that are not tensors enter by their ``repr``.

    Args:
        named (sequence of (str, Any)): the named values, in a fixed order.

    Returns:
        *str*: the hex digest.

    Examples::

        >>> hash_tensors(list(model.state_dict().items()))[:8]
        '8a9ba068'
    """
    digest = hashlib.sha256()
    for name, value in named:
        if not isinstance(value, torch.Tensor):
            digest.update(f"{name}|{value!r}|".encode())
            continue
        data = value.detach().to("cpu").contiguous().reshape(-1)
        digest.update(f"{name}|{data.dtype}|{tuple(value.shape)}|".encode())
        digest.update(data.view(torch.uint8).numpy().tobytes() if data.numel() else b"")
    return digest.hexdigest()


def dataset_fingerprint(dataset: Any, num_items: int) -> str:
    r"""
    A hash of a map-style dataset's length and of :data:`SAMPLED_ITEMS` evenly
    spaced items (the first and the last among them), every field of each item.

    Cheap (eight items are read) and enough to tell another dataset, another
    split, a reordering or an edited first or last item from the one a file was
    made with; an edit to an item that is not sampled goes unnoticed.

    Args:
        dataset (Any): the dataset (``dataset[i]`` for ``i < num_items``).
        num_items (int): its length.

    Returns:
        *str*: the hex digest.

    Examples::

        >>> dataset_fingerprint(train_set, len(train_set))[:8]
        '3f0c2b1a'
    """
    count = min(num_items, SAMPLED_ITEMS)
    picked = sorted({round(i * (num_items - 1) / max(1, count - 1)) for i in range(count)})
    named: List[Tuple[str, Any]] = [("length", num_items)]
    for index in picked:
        item = dataset[index]
        fields = item if isinstance(item, (tuple, list)) else (item,)
        named += [(f"{index}/{k}", value) for k, value in enumerate(fields)]
    return hash_tensors(named)
