#!/usr/bin/env python3
r"""Batches whose rows are modified copies of the original examples: how many rows go
through the model per pass, row selection, the progress bar and the one chunked
evaluation loop.

Rows per pass
-------------
Every method and metric that evaluates many modified copies (masked inputs, ablated
channels, path points, thresholds, deletion steps, …) runs them through
:func:`evaluate_in_chunks`. When the caller gives an integer
(``internal_batch_size`` / ``max_examples_per_batch``), that many rows go through the
model per pass, as in Captum. When it gives ``None``, the rows per pass come from the
**pass budget** (:func:`get_pass_budget`) and the size of one row:

``rows per pass = max(1, budget // (row input + LIVE_ACTIVATIONS · largest activation))``

(at most :data:`MAX_CPU_ROWS_PER_PASS` through a whole model on the CPU; through a head
only, :data:`HEAD_LIVE_ACTIVATIONS` in place of :data:`LIVE_ACTIVATIONS`), where "row
input" is the bytes of one modified copy and "largest activation" the largest module
output one row creates (or the row input, when larger: a head's input is its largest
tensor), measured on the first pass of every loop (a forward hook on every module for
that one pass). The first pass itself is sized with the largest activation taken as
:data:`UNMEASURED_ACTIVATION_RATIO` times the row's input, so it is small; every later
pass has the measured size. The passes of a call therefore depend only on the model,
the row's shape and the budget, never on earlier calls, and so do the results.

The budget is :data:`DEFAULT_CPU_PASS_BUDGET` on the CPU — the working set at which
passes of 192–224 px ImageNet networks are still bound by arithmetic rather than by
memory traffic on the machine where it was measured (``docs/speed.md``) — and
:data:`DEFAULT_CUDA_FREE_SHARE` of the free memory on CUDA. With ``None``, a pass that
runs out of memory is retried with half the rows (down to one row), and the smaller
size is remembered for the model and row shape (later calls start from it).

Change the budget for a block of code with :func:`pass_budget`, for the process with
:func:`set_pass_budget`, or from outside with the environment variable
``CAPTUM_CAMS_PASS_BUDGET`` (e.g. ``256M``).
"""

import contextlib
import math
import os
import re
import weakref
from contextvars import ContextVar
from typing import Any, Callable, Dict, Iterator, Optional, Tuple, Union

import torch
from torch import Tensor

#: The working set one pass of modified copies may hold on the CPU (and devices other
#: than CUDA) when no budget is set: 32 MiB.
DEFAULT_CPU_PASS_BUDGET: int = 32 * 2**20

#: On CUDA, without a set budget, one pass may hold this share of the memory that is
#: free on the device (``torch.cuda.mem_get_info``, plus what PyTorch's caching
#: allocator holds unused).
DEFAULT_CUDA_FREE_SHARE: float = 0.5

#: The environment variable read when no budget is set in code: bytes, or a number
#: with a suffix ``K``, ``M`` or ``G`` (powers of 1024).
PASS_BUDGET_ENV: str = "CAPTUM_CAMS_PASS_BUDGET"

#: On the CPU (and devices other than CUDA) a pass through a whole model holds at most
#: this many rows, however small they are: this many rows already amortise a pass's fixed
#: cost, and larger passes of small rows only make the allocator map and zero-fill fresh
#: pages, which costs more time than the fewer passes save. A head's rows are not capped:
#: they are cheap, so a call's fixed cost weighs much against them and larger passes
#: still save time (the measurements are in ``docs/speed.md``).
MAX_CPU_ROWS_PER_PASS: int = 32

#: Activations of one row alive at once at the peak of a pass, in units of the
#: largest one (e.g. a residual block's input, a convolution's output and its
#: normalised copy).
LIVE_ACTIVATIONS: int = 3

#: The same for a head's rows (Ablation- and SHAP-CAM): a head's largest tensor is
#: usually the modified copy it is given, and what it makes from it (a pooled vector,
#: logits) is small, so one more tensor of that size is counted, not three. With three,
#: ResNet-50's head passes were 20 rows of 2048 x 7 x 7 and MobileNetV1's 76, slower than
#: 40 and 150 (``docs/speed.md``).
HEAD_LIVE_ACTIVATIONS: int = 1

#: For the first pass of a loop, before they are measured, the largest activation of
#: a row is taken as this many times the row's input: common ImageNet networks' largest
#: activation is a few times to a few tens of times their input, and a guess on the
#: large side keeps the first pass small (its size only decides that pass; every later
#: one is sized by what the first measured).
UNMEASURED_ACTIVATION_RATIO: int = 8

BudgetLike = Union[None, int, str]

#: What a pass that runs out of memory raises (CUDA's and, since torch 2.5, the CPU
#: allocator's error).
_OUT_OF_MEMORY = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)

_SUFFIXES = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30}

_scoped_budget: ContextVar[Optional[int]] = ContextVar("captum_cams_pass_budget", default=None)
_process_budget: Optional[int] = None


def parse_budget(budget: BudgetLike, name: str = "budget") -> Optional[int]:
    r"""
    A budget in bytes from an int or a string such as ``"64M"``.

    Args:
        budget (int, str or None): bytes (a positive int), a string of a positive
                    number with an optional suffix ``K``, ``M``, ``G`` (powers of 1024,
                    an optional ``B`` or ``iB`` after it), or None.
        name (str, optional): the argument's name in errors. Default: ``"budget"``.

    Returns:
        *int* or None: the bytes, at least 1; None for None.

    Examples::

        >>> parse_budget("64M"), parse_budget(2**20), parse_budget("1.5G")
        (67108864, 1048576, 1610612736)
    """
    if budget is None:
        return None
    if isinstance(budget, str):
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([kKmMgG]?)(i?[bB])?\s*", budget)
        if match is None:
            raise ValueError(
                f"{name} must be bytes or a number with K, M or G (e.g. '256M'); got {budget!r}"
            )
        value = float(match.group(1)) * _SUFFIXES[match.group(2).lower()]
        if not math.isfinite(value) or value < 1:
            raise ValueError(f"{name} must be at least one byte; got {budget!r}")
        return int(value)
    if isinstance(budget, bool) or not isinstance(budget, int):
        raise TypeError(f"{name} must be an int, a string such as '64M' or None; got {budget!r}")
    if budget < 1:
        raise ValueError(f"{name} must be at least one byte; got {budget}")
    return budget


def set_pass_budget(budget: BudgetLike) -> None:
    r"""
    Sets the pass budget for the whole process: the bytes one pass of modified copies
    may hold when a method or metric is called with ``internal_batch_size=None`` /
    ``max_examples_per_batch=None`` (their default), on every device.

    Args:
        budget (int, str or None): bytes, or a string such as ``"256M"``; None goes
                    back to the default (:data:`DEFAULT_CPU_PASS_BUDGET` on the CPU,
                    :data:`DEFAULT_CUDA_FREE_SHARE` of the free memory on CUDA, or
                    ``CAPTUM_CAMS_PASS_BUDGET`` when set).

    Examples::

        >>> captum_cams.set_pass_budget("256M")   # larger passes from now on
        >>> captum_cams.set_pass_budget(None)     # back to the default
    """
    global _process_budget
    _process_budget = parse_budget(budget)


@contextlib.contextmanager
def pass_budget(budget: BudgetLike) -> Iterator[None]:
    r"""
    The pass budget inside a ``with`` block (this thread or task only), on every
    device; it takes precedence over :func:`set_pass_budget` and the environment.

    Args:
        budget (int, str or None): bytes, or a string such as ``"8M"``; None keeps
                    the budget that applies outside the block.

    Returns:
        *contextmanager*: the block's budget is restored on exit.

    Examples::

        >>> with captum_cams.pass_budget("8M"):    # small passes, e.g. beside other jobs
        ...     maps = LayerScoreCam(net, net.layer4).attribute(x, target=3)
    """
    token = _scoped_budget.set(parse_budget(budget) if budget is not None else _scoped_budget.get())
    try:
        yield
    finally:
        _scoped_budget.reset(token)


def get_pass_budget(device: Union[None, str, torch.device] = None) -> int:
    r"""
    The bytes one pass of modified copies may hold on ``device``: the budget of the
    innermost :func:`pass_budget` block, else the one of :func:`set_pass_budget`,
    else ``CAPTUM_CAMS_PASS_BUDGET``, else the device's default
    (:data:`DEFAULT_CPU_PASS_BUDGET`; on CUDA :data:`DEFAULT_CUDA_FREE_SHARE` of the
    free memory).

    Args:
        device (str or torch.device, optional): where the passes run. Default: the CPU.

    Returns:
        *int*: the budget in bytes.

    Examples::

        >>> captum_cams.get_pass_budget("cpu")
        33554432
    """
    for budget in (_scoped_budget.get(), _process_budget):
        if budget is not None:
            return budget
    from_env = os.environ.get(PASS_BUDGET_ENV, "").strip()
    if from_env:
        parsed = parse_budget(from_env, PASS_BUDGET_ENV)
        assert parsed is not None
        return parsed
    device = torch.device("cpu" if device is None else device)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        unused = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
        return max(1, int(DEFAULT_CUDA_FREE_SHARE * (free + unused)))
    return DEFAULT_CPU_PASS_BUDGET


# ----------------------------------------------------------------------- row sizes
#: model -> {(row shape, dtype, device): the most rows per pass that fitted in memory},
#: after an out-of-memory error; models that cannot be weakly referenced (or are
#: unhashable) are not remembered.
_FITTED_ROWS: "weakref.WeakKeyDictionary[Any, Dict[Tuple[Any, ...], int]]" = (
    weakref.WeakKeyDictionary()
)


def _fitted_key(row: Optional[Tensor]) -> Tuple[Any, ...]:
    return () if row is None else (tuple(row.shape), row.dtype, row.device)


def _fitted_rows(model: Any, row: Optional[Tensor]) -> Optional[int]:
    try:
        return _FITTED_ROWS.get(model, {}).get(_fitted_key(row))
    except TypeError:  # not weakly referenceable, or unhashable
        return None


def _remember_fitted_rows(model: Any, row: Optional[Tensor], rows: int) -> None:
    try:
        _FITTED_ROWS.setdefault(model, {})[_fitted_key(row)] = rows
    except TypeError:
        pass


def _tensor_bytes(value: Any) -> int:
    if isinstance(value, Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, (tuple, list)):
        return max((_tensor_bytes(item) for item in value), default=0)
    if isinstance(value, dict):
        return max((_tensor_bytes(item) for item in value.values()), default=0)
    return 0


@contextlib.contextmanager
def _largest_module_output() -> Iterator[Dict[str, int]]:
    r"""Records the bytes of the largest tensor any module outputs inside the block."""
    seen = {"bytes": 0}

    def hook(_module: torch.nn.Module, _inputs: Any, output: Any) -> None:
        size = _tensor_bytes(output)
        if size > seen["bytes"]:
            seen["bytes"] = size

    handle = torch.nn.modules.module.register_module_forward_hook(hook)
    try:
        yield seen
    finally:
        handle.remove()


def row_working_set(
    row_bytes: int, activation_bytes: Optional[float], live_activations: int = LIVE_ACTIVATIONS
) -> float:
    r"""
    The estimated bytes one row occupies at the peak of a pass: its input plus
    ``live_activations`` times its largest activation, the input included (taken
    as :data:`UNMEASURED_ACTIVATION_RATIO` times the input when not measured).

    Args:
        row_bytes (int): the bytes of one row's input.
        activation_bytes (float, optional): the largest activation of one row.
        live_activations (int, optional): how many tensors of the largest activation's
                    size one row holds at once. Default: :data:`LIVE_ACTIVATIONS`.

    Returns:
        *float*: bytes.

    Examples::

        >>> row_working_set(3 * 224 * 224 * 4, 256 * 56 * 56 * 4) / 2**20   # ResNet-50
        9.762...
    """
    if activation_bytes is None:
        activation_bytes = UNMEASURED_ACTIVATION_RATIO * row_bytes
    # the row's input is one of its activations too (a head's largest tensor is the
    # modified copy of the layer's output it is given)
    return row_bytes + live_activations * max(activation_bytes, row_bytes)


def rows_per_pass(
    row_bytes: int,
    activation_bytes: Optional[float],
    device: Union[str, torch.device],
    head: bool = False,
) -> int:
    r"""
    Rows per pass under the pass budget: ``max(1, budget // row working set)``, and
    on the CPU at most :data:`MAX_CPU_ROWS_PER_PASS` rows through a whole model.

    Args:
        row_bytes (int): the bytes of one row's input.
        activation_bytes (float, optional): the largest activation of one row; None:
                    not measured yet (a conservative guess from the input).
        device (str or torch.device): where the passes run.
        head (bool, optional): the rows go through a model's head only (Ablation- and
                    SHAP-CAM): :data:`HEAD_LIVE_ACTIVATIONS` tensors of the largest size
                    per row, and no row cap (the head's call costs much against its
                    rows). Default: False.

    Returns:
        *int*: at least 1.

    Examples::

        >>> rows_per_pass(3 * 224 * 224 * 4, 256 * 56 * 56 * 4, "cpu")   # ResNet-50
        3
    """
    live = HEAD_LIVE_ACTIVATIONS if head else LIVE_ACTIVATIONS
    working_set = row_working_set(row_bytes, activation_bytes, live)
    rows = max(1, int(get_pass_budget(device) // max(working_set, 1.0)))
    if not head and torch.device(device).type != "cuda":
        rows = min(rows, MAX_CPU_ROWS_PER_PASS)
    return rows


# ----------------------------------------------------------------------- progress
class _Progress:
    __slots__ = ("bar", "unit")

    def __init__(self, bar: Any, unit: str) -> None:
        self.bar = bar
        self.unit = unit


_progress: ContextVar[Optional[_Progress]] = ContextVar("captum_cams_progress", default=None)


@contextlib.contextmanager
def progress_bar(show: bool, description: str, unit: str = "rows") -> Iterator[None]:
    r"""
    A tqdm progress bar over the passes inside the block, for the ``show_progress``
    option of the methods and metrics.

    The chunked loop (:func:`evaluate_in_chunks`) adds its rows to the bar and
    advances it after every pass, so one bar covers every loop of a call (Libra-CAM's
    filtering and calibration, a metric's unmasked and masked passes). A call nested
    in a call that shows a bar reports to that bar, whatever its own ``show``.

    Args:
        show (bool): show a bar (when no enclosing call shows one).
        description (str): the bar's label, e.g. the method's name.
        unit (str, optional): what the bar counts; the chunked loop reports to bars
                    that count ``"rows"``. Default: ``"rows"``.

    Examples::

        >>> with progress_bar(show_progress, "Score-CAM"):
        ...     scores = evaluate_in_chunks(evaluate, num_rows, None, row=x[0], model=net)
    """
    if not isinstance(show, bool):
        raise TypeError(f"show_progress must be a bool; got {type(show).__name__}")
    if not show or _progress.get() is not None:
        yield
        return
    from tqdm.auto import tqdm

    bar = tqdm(total=0, desc=description, unit=unit, leave=True)
    token = _progress.set(_Progress(bar, unit))
    try:
        yield
    finally:
        _progress.reset(token)
        bar.close()


def add_to_progress(total: int = 0, done: int = 0, unit: str = "rows") -> None:
    r"""
    Adds ``total`` steps to the active bar and advances it by ``done`` (nothing when
    no bar counting ``unit`` is active).

    Args:
        total (int, optional): steps added to the bar's total. Default: 0.
        done (int, optional): steps completed. Default: 0.
        unit (str, optional): the unit counted. Default: ``"rows"``.

    Examples::

        >>> add_to_progress(total=len(layers), unit="maps")
    """
    active = _progress.get()
    if active is None or active.unit != unit:
        return
    if total:
        active.bar.total += total
        active.bar.refresh()
    if done:
        active.bar.update(done)


# ----------------------------------------------------------------------- loop
def select_rows(values: Tensor, index: Tensor) -> Tensor:
    r"""
    Rows ``index`` of ``values`` (along the first dimension), as ``values[index]`` for
    a 1-D ``LongTensor`` gives them.

    The modified copies of every chunked loop are built from rows picked this way, and
    ``index_select`` copies whole rows where advanced indexing gathers element by
    element: 5 to 10 times faster on the CPU for a pass of repeated rows (e.g. 76 copies
    of one example's 768 x 6 x 6 activations: 0.44 ms against 2.4 ms).

    Args:
        values (Tensor): at least one dimension.
        index (Tensor): ``(M,)`` integer row indices, on ``values``'s device.

    Returns:
        *Tensor*: ``M x values.shape[1:]``, a new tensor (gradients flow to ``values``).

    Examples::

        >>> select_rows(torch.arange(6).view(3, 2), torch.tensor([2, 2, 0]))
        tensor([[4, 5],
                [4, 5],
                [0, 1]])
    """
    return values.index_select(0, index)


#: :func:`multiplied_rows` broadcasts run by run when the runs hold at least this many
#: rows on average; shorter runs would cost a call each for little saved.
_ROWS_PER_RUN: int = 4


def multiplied_rows(values: Tensor, index: Tensor, factors: Tensor) -> Tensor:
    r"""
    ``select_rows(values, index) * factors``, the same numbers, written once.

    The rows of a pass usually come in runs of one example (the ``K`` prefixes of one
    order of SHAP-CAM, the masks of one image), so on the CPU each run is the example's
    row broadcast against its factors, written straight into the result: the copy of
    the selected rows and the second pass over it are saved, which is most of the
    memory traffic of a pass through a model's head. Elsewhere (CUDA, where finding
    the runs would wait for the device), with a graph to record, for rows of many
    short runs or for non-contiguous ``values`` it is ``select_rows`` times
    ``factors``.

    Args:
        values (Tensor): ``N x ...``.
        index (Tensor): ``(M,)`` integer row indices, on ``values``'s device.
        factors (Tensor): ``M x ...`` (or ``1 x ...``) with as many dimensions as
                    ``values``, broadcastable against its rows (e.g. ``M x 1 x H x W``
                    masks, or ``M x K x 1 x 1`` channel masks, bool or float).

    Returns:
        *Tensor*: ``M x ...``, ``values[index] * factors``.

    Examples::

        >>> factors = torch.tensor([[1.0], [2.0], [3.0]])
        >>> multiplied_rows(torch.ones(2, 3), torch.tensor([0, 0, 1]), factors)
        tensor([[1., 1., 1.],
                [2., 2., 2.],
                [3., 3., 3.]])
    """
    rows = index.numel()
    if (
        values.device.type != "cpu"
        or rows < 2
        or factors.dim() != values.dim()
        or not values.is_contiguous()
        or (torch.is_grad_enabled() and (values.requires_grad or factors.requires_grad))
    ):
        return select_rows(values, index) * factors
    examples, counts = torch.unique_consecutive(index, return_counts=True)
    if examples.numel() * _ROWS_PER_RUN > rows:  # runs too short to pay for a call each
        return select_rows(values, index) * factors
    shape = torch.broadcast_shapes((rows, *values.shape[1:]), factors.shape)
    product = torch.empty(shape, dtype=torch.result_type(values, factors), device=values.device)
    start = 0
    for example, count in zip(examples.tolist(), counts.tolist()):
        end = start + count
        row_factors = factors if factors.shape[0] == 1 else factors[start:end]
        row = values[example : example + 1].expand(count, *values.shape[1:])
        torch.mul(row, row_factors, out=product[start:end])
        start = end
    return product


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
        select_rows(value, index.to(value.device))
        if isinstance(value, Tensor) and value.dim() > 0 and value.shape[0] == batch_size
        else value
        for value in values
    )


def evaluate_in_chunks(
    evaluate: Callable[[Tensor], Tensor],
    num_rows: int,
    chunk_size: Optional[int],
    device: Union[str, torch.device],
    row: Optional[Tensor] = None,
    model: Any = None,
    head: bool = False,
) -> Tensor:
    r"""
    The one chunked evaluation loop: ``evaluate`` on consecutive row ranges.

    Every method and metric that evaluates many modified copies of a batch (ablated
    channels, masked inputs, thresholds, insertion steps, path points, …) goes
    through here, so at most one chunk of rows exists at a time and the results land
    in one buffer. An integer ``chunk_size`` is the rows per call. ``None`` sizes the
    chunks from the pass budget (see the module): the largest activation a row
    creates is measured on the first chunk, which sizes the others, and a chunk that
    runs out of memory is retried with half the rows.
    The active progress bar (:func:`progress_bar`) advances after every chunk.

    Args:
        evaluate (Callable): maps a ``LongTensor`` of row indices to a tensor whose
                    first dimension has one entry per row.
        num_rows (int): the number of rows, at least 1.
        chunk_size (int, optional): rows per call; ``None``: from the pass budget.
        device (str or torch.device): where the row indices live and the passes run.
        row (Tensor, optional): one row's input as the model gets it (e.g. one
                    masked image, or one example's activations for a head), which
                    sizes the chunks with ``chunk_size=None``. None: the first chunk
                    is one row, and its measured activations size the others.
        model (Any, optional): what the rows go through (a module, a head), under
                    which the rows that fitted after an out-of-memory error are
                    remembered. Default: None (not remembered).
        head (bool, optional): the rows go through a model's head only, and so are
                    not held to :data:`MAX_CPU_ROWS_PER_PASS`. Default: False.

    Returns:
        *Tensor*: the results of all rows, in row order.

    Examples::

        >>> scores = evaluate_in_chunks(
        ...     lambda rows: net(masked(rows))[:, 3], num_rows=80, chunk_size=None,
        ...     device=x.device, row=x[0], model=net)
    """
    if num_rows < 1:
        raise ValueError(f"num_rows must be at least 1; got {num_rows}")
    device = torch.device(device)
    automatic = chunk_size is None
    row_bytes = 0 if row is None else row.numel() * row.element_size()
    fitted = _fitted_rows(model, row) if automatic and model is not None else None
    if chunk_size is not None:
        chunk = chunk_size
    elif row is None:
        chunk = 1  # nothing known: one row measures what a row costs
    else:
        chunk = rows_per_pass(row_bytes, None, device, head)
    if fitted is not None:
        chunk = min(chunk, fitted)
    add_to_progress(total=num_rows)
    results: Optional[Tensor] = None
    measure = automatic and chunk < num_rows  # a single pass needs no later sizing
    start = 0
    while start < num_rows:
        stop = min(start + chunk, num_rows)
        rows = torch.arange(start, stop, device=device)
        try:
            with _largest_module_output() if measure else contextlib.nullcontext() as seen:
                values = evaluate(rows)
        except _OUT_OF_MEMORY:
            if not automatic or stop - start == 1:
                raise
            chunk = fitted = max(1, (stop - start) // 2)
            if model is not None:
                _remember_fitted_rows(model, row, chunk)
            continue
        if measure:
            assert seen is not None
            measure = False
            if seen["bytes"] > 0:  # else no module ran: keep the guess from the input
                activation = seen["bytes"] / (stop - start)
                size = row_bytes if row is not None else activation
                chunk = rows_per_pass(int(size), activation, device, head)
            elif row is None:
                chunk = num_rows  # nothing to size the passes by
            if fitted is not None:
                chunk = min(chunk, fitted)
        if results is None:  # one buffer, in the dtype and device of the results
            results = values.new_empty((num_rows, *values.shape[1:]))
        results[start:stop] = values
        add_to_progress(done=stop - start)
        start = stop
    assert results is not None
    return results


__all__ = [
    "DEFAULT_CPU_PASS_BUDGET",
    "DEFAULT_CUDA_FREE_SHARE",
    "HEAD_LIVE_ACTIVATIONS",
    "LIVE_ACTIVATIONS",
    "MAX_CPU_ROWS_PER_PASS",
    "PASS_BUDGET_ENV",
    "UNMEASURED_ACTIVATION_RATIO",
    "add_to_progress",
    "evaluate_in_chunks",
    "get_pass_budget",
    "parse_budget",
    "pass_budget",
    "progress_bar",
    "row_working_set",
    "rows_per_pass",
    "select_rows",
    "set_pass_budget",
    "take_examples",
]
