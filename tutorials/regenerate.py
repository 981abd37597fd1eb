#!/usr/bin/env python3
"""Runs the tutorials and writes their outputs into them, figures included.

The notebooks are committed with their outputs, so that they show their figures
where people browse them; ``tests/test_tutorials.py`` runs every notebook exactly as
this script does and fails when a committed output is out of date. After changing a
notebook or the code it runs, refresh the outputs with one command, from the
repository root::

    python tutorials/regenerate.py                          # every notebook
    python tutorials/regenerate.py tutorials/01_first_explanation.ipynb

A notebook runs as ``jupyter nbconvert --to notebook --execute`` runs it, in a fresh
kernel with Jupyter's inline matplotlib backend (``MPLBACKEND`` unset), one thread
(``OMP_NUM_THREADS=1``: the same sums in the same order, so the printed numbers are
the same on every run) and this repository on ``PYTHONPATH``.
"""

import argparse
import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import nbformat

TUTORIALS = Path(__file__).resolve().parent
REPOSITORY = TUTORIALS.parent

#: Longest a notebook may run, in seconds.
TIMEOUT = 600


def notebooks() -> List[Path]:
    r"""
    The tutorials, in order.

    Returns:
        *list[Path]*: every ``*.ipynb`` of this folder.

    Examples::

        >>> [path.name for path in notebooks()][:1]
        ['01_first_explanation.ipynb']
    """
    return sorted(TUTORIALS.glob("*.ipynb"))


def kernel_environment() -> Dict[str, str]:
    r"""
    The environment a tutorial's kernel runs in: this one, without ``MPLBACKEND`` (so
    the kernel uses Jupyter's inline backend, as a user's would), with one thread and
    a fixed string hash seed (the same numbers and orders on every run), and the
    repository on ``PYTHONPATH``.

    Returns:
        *dict[str, str]*: the variables.

    Examples::

        >>> kernel_environment()["OMP_NUM_THREADS"]
        '1'
    """
    environment = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    environment.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONHASHSEED="0")
    paths = [str(REPOSITORY), environment.get("PYTHONPATH", "")]
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, paths))
    return environment


def execute(path: Path, timeout: int = TIMEOUT) -> nbformat.NotebookNode:
    r"""
    Runs a notebook with ``jupyter nbconvert --to notebook --execute`` in the
    environment of :func:`kernel_environment`.

    Args:
        path (Path): the notebook.
        timeout (int, optional): seconds the whole run may take. Default: 600.

    Returns:
        *NotebookNode*: the executed notebook (the file is left as it was).

    Raises:
        RuntimeError: a cell raised, or the run failed; the message holds nbconvert's
        output.

    Examples::

        >>> executed = execute(TUTORIALS / "01_first_explanation.ipynb")
    """
    command = [
        sys.executable, "-m", "jupyter", "nbconvert", "--to", "notebook", "--execute",
        "--stdout", f"--ExecutePreprocessor.timeout={timeout}",
        "--ExecutePreprocessor.record_timing=False", "--ExecutePreprocessor.kernel_name=python3",
        str(path),
    ]  # fmt: skip
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        env=kernel_environment(),
        cwd=path.parent,
        timeout=timeout + 60,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{path.name} failed to run:\n{done.stderr[-6000:]}")
    return nbformat.reads(done.stdout, as_version=4)


def _same_stream(first: Optional[nbformat.NotebookNode], then: nbformat.NotebookNode) -> bool:
    return (
        first is not None
        and first.output_type == then.output_type == "stream"
        and first.name == then.name
    )


def regenerate(path: Path) -> int:
    r"""
    Runs a notebook and writes it back with its new outputs.

    Args:
        path (Path): the notebook.

    Returns:
        *int*: the notebook's size in bytes.

    Examples::

        >>> regenerate(TUTORIALS / "01_first_explanation.ipynb")
    """
    executed = execute(path)
    for cell in executed.cells:
        cell.metadata.pop("execution", None)  # timings would change every run
        merged: List[nbformat.NotebookNode] = []
        for output in cell.get("outputs", []):  # a stream arrives in pieces, split by timing
            last = merged[-1] if merged else None
            if _same_stream(last, output):
                last.text += output.text
            else:
                merged.append(output)
        if cell.cell_type == "code":
            cell.outputs = merged
    text = nbformat.writes(executed) + "\n"
    path.write_text(text, encoding="utf-8")
    return len(text.encode("utf-8"))


def main(argv: Optional[Sequence[str]] = None) -> int:
    r"""
    The command line: regenerates the notebooks given, or all of them.

    Args:
        argv (list[str], optional): notebook paths. Default: the command line's.

    Returns:
        *int*: the exit status.

    Examples::

        >>> main(["tutorials/01_first_explanation.ipynb"])
        0
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: every tutorial")
    args = parser.parse_args(argv)
    for path in args.notebooks or notebooks():
        size = regenerate(path.resolve())
        print(f"{path.name}: {size / 1000:.0f} kB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
