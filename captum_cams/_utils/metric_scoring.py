#!/usr/bin/env python3
r"""Chunked model evaluation shared by the perturbation metrics.

A metric describes its perturbed inputs as a grid of ``N x S`` jobs (example ``i``,
step ``s``) and a function that builds the perturbed inputs of any list of jobs.
:func:`perturbed_scores` walks the grid in example-major order, ``max_examples_per_batch``
jobs per forward pass (``None``: as many as the pass budget of
:mod:`captum_cams._utils.batching` allows), so no more than that many perturbed inputs
exist at a time, and returns the ``N x S`` target scores. Because every job is built
from its own example only, the chunk size cannot change a result (apart from the
model's own batch dependence, e.g. BatchNorm in training mode).
"""

import contextlib
from contextvars import ContextVar
from typing import Any, Callable, Iterator, List, NamedTuple, Optional, Tuple

import torch
from captum._utils.common import _format_additional_forward_args
from captum._utils.typing import TargetType
from torch import Tensor

from captum_cams._utils.baselines import BaselineLike
from captum_cams._utils.batching import evaluate_in_chunks, select_rows, take_examples
from captum_cams._utils.guards import (
    check_additional_forward_args,
    check_positive_int,
    format_target,
    preserved_model_state,
    target_indices,
)
from captum_cams._utils.masking import masked_rows, sweep_baseline
from captum_cams._utils.scores import check_score, scores_of
from captum_cams._utils.thresholding import KeepFunction


def _to_scores(outputs: Tensor, score: str) -> Tensor:
    if not isinstance(outputs, Tensor) or outputs.dim() != 2:
        shape = tuple(outputs.shape) if isinstance(outputs, Tensor) else type(outputs).__name__
        raise ValueError(f"forward_func must return an N x num_classes tensor; got {shape}")
    return scores_of(outputs, score)


def forward_scores(
    forward_func: Callable,
    batch: Tensor,
    examples: Tensor,
    num_examples: int,
    additional_forward_args: Any,
    score: str,
) -> Tensor:
    args = (
        None
        if additional_forward_args is None
        else take_examples(additional_forward_args, examples, num_examples)
    )
    outputs = forward_func(batch) if args is None else forward_func(batch, *args)
    return _to_scores(outputs, score)


def _same_tensor(first: Tensor, second: Tensor) -> bool:
    r"""Whether two tensors are views of the same unchanged data (same storage,
    offset, shape, strides, dtype, device and version counter)."""
    return (
        first.data_ptr() == second.data_ptr()
        and first.shape == second.shape
        and first.stride() == second.stride()
        and first.dtype == second.dtype
        and first.device == second.device
        and first._version == second._version
    )


class SharedPasses:
    r"""
    Results of passes that several metrics (and methods) of one batch need, so that
    each is evaluated once: the model's outputs on the batch, and whole sweeps of
    masked copies (TFT's). Entries are found by the model object, the very tensor of
    inputs (same data, unchanged) and, for sweeps, a key of everything else that
    defines them plus tensors compared element by element. Active inside
    :func:`shared_passes` only; the benchmark's runner opens one per batch.

    Examples::

        >>> with shared_passes() as shared:
        ...     shared.remember_outputs(model, images, model(images))
        ...     average_drop(model, images, maps)     # no second pass of the images
    """

    def __init__(self) -> None:
        self._outputs: List[Tuple[Any, Tensor, Tensor]] = []
        self._results: List[Tuple[Any, Tensor, Tuple[Any, ...], Tuple[Tensor, ...], Any]] = []

    def remember_outputs(self, forward_func: Any, inputs: Tensor, outputs: Tensor) -> None:
        r"""
        Records ``forward_func(inputs)`` (the ``N x num_classes`` outputs).

        Args:
            forward_func (Any): the model.
            inputs (Tensor): the batch, exactly as later calls get it.
            outputs (Tensor): the model's outputs on it.

        Examples::

            >>> shared.remember_outputs(model, images, logits)
        """
        self._outputs.append((forward_func, inputs, outputs.detach()))

    def outputs(self, forward_func: Any, inputs: Tensor) -> Optional[Tensor]:
        r"""
        The recorded outputs of ``forward_func`` on this very ``inputs``, or None.

        Args:
            forward_func (Any): the model.
            inputs (Tensor): the batch.

        Returns:
            *Tensor* or None: the outputs.

        Examples::

            >>> logits = shared.outputs(model, images)
        """
        for model, seen, outputs in self._outputs:
            if model is forward_func and _same_tensor(seen, inputs):
                return outputs
        return None

    def result(
        self, forward_func: Any, inputs: Tensor, key: Tuple[Any, ...], tensors: Tuple[Tensor, ...]
    ) -> Any:
        r"""
        A recorded result for the same model, inputs, key and (equal) tensors, or None.

        Args:
            forward_func (Any): the model.
            inputs (Tensor): the batch.
            key (tuple): hashable settings (the kind of result first).
            tensors (tuple[Tensor, ...]): tensors that must be equal (e.g. the maps).

        Returns:
            *Any*: the result, or None.

        Examples::

            >>> shared.result(model, images, ("tft", thresholds), (maps, target))
        """
        for model, seen, known_key, known_tensors, value in self._results:
            if (
                model is forward_func
                and known_key == key
                and _same_tensor(seen, inputs)
                and len(known_tensors) == len(tensors)
                and all(
                    a.shape == b.shape and a.dtype == b.dtype and torch.equal(a, b)
                    for a, b in zip(known_tensors, tensors)
                )
            ):
                return value
        return None

    def remember_result(
        self,
        forward_func: Any,
        inputs: Tensor,
        key: Tuple[Any, ...],
        tensors: Tuple[Tensor, ...],
        value: Any,
    ) -> None:
        r"""
        Records a result under the model, inputs, key and tensors.

        Args:
            forward_func (Any): the model.
            inputs (Tensor): the batch.
            key (tuple): hashable settings.
            tensors (tuple[Tensor, ...]): tensors a later lookup must match.
            value (Any): the result.

        Examples::

            >>> shared.remember_result(model, images, ("tft", thresholds), (maps, target), result)
        """
        self._results.append((forward_func, inputs, key, tensors, value))


_shared_passes: ContextVar[Optional[SharedPasses]] = ContextVar(
    "captum_cams_shared_passes", default=None
)


@contextlib.contextmanager
def shared_passes() -> Iterator[SharedPasses]:
    r"""
    A scope in which the perturbation metrics and TFT reuse each other's passes of
    the same batch (see :class:`SharedPasses`); nested scopes share the outer one.

    Returns:
        *contextmanager*: yields the scope's :class:`SharedPasses`.

    Examples::

        >>> with shared_passes() as shared:
        ...     shared.remember_outputs(model, images, logits)
        ...     scores = {name: metric(model, images, maps) for name, metric in metrics}
    """
    outer = _shared_passes.get()
    if outer is not None:
        yield outer
        return
    scope = SharedPasses()
    token = _shared_passes.set(scope)
    try:
        yield scope
    finally:
        _shared_passes.reset(token)


def active_shared_passes() -> Optional[SharedPasses]:
    r"""
    The :class:`SharedPasses` of the enclosing :func:`shared_passes`, or None.

    Returns:
        *SharedPasses* or None.

    Examples::

        >>> shared = active_shared_passes()
    """
    return _shared_passes.get()


def original_scores(
    forward_func: Callable,
    inputs: Tensor,
    target: TargetType,
    additional_forward_args: Any,
    max_examples_per_batch: Optional[int],
    score: str,
) -> Tuple[Tensor, Tensor, Tensor]:
    r"""
    Scores of the unperturbed inputs, evaluated in chunks.

    Returns:
        *tuple*: ``(y, target_idx, all_scores)``: the target score per example
        ``(N,)``, the checked target indices ``(N,)`` (``None`` → predicted class),
        and the full ``N x num_classes`` scores.
    """
    num = inputs.shape[0]
    afa = _format_additional_forward_args(additional_forward_args)
    check_additional_forward_args(afa, inputs.shape[0])
    shared = active_shared_passes()
    known = None if shared is None or afa is not None else shared.outputs(forward_func, inputs)
    if known is not None:
        all_scores = _to_scores(known, score)
        idx = target_indices(target, all_scores)
        return all_scores.gather(1, idx.unsqueeze(1)).squeeze(1), idx, all_scores
    all_scores = evaluate_in_chunks(
        lambda rows: forward_scores(forward_func, select_rows(inputs, rows), rows, num, afa, score),
        num,
        max_examples_per_batch,
        inputs.device,
        row=inputs[0],
        model=forward_func,
    )
    idx = target_indices(target, all_scores)
    return all_scores.gather(1, idx.unsqueeze(1)).squeeze(1), idx, all_scores


def perturbed_scores(
    forward_func: Callable,
    inputs: Tensor,
    num_steps: int,
    build: Callable[[Tensor, Tensor], Tensor],
    target_idx: Tensor,
    additional_forward_args: Any,
    max_examples_per_batch: Optional[int],
    score: str,
    return_all: bool = False,
    check_target: bool = False,
) -> Tensor:
    r"""
    Target scores of ``N x num_steps`` perturbed inputs.

    Args:
        forward_func (Callable): the model.
        inputs (Tensor): ``N x C x H x W`` inputs.
        num_steps (int): ``S``, perturbations per example.
        build (Callable): ``build(examples, steps)`` returns the ``B x C x H x W``
                    perturbed inputs of the jobs ``(examples[b], steps[b])``.
        target_idx (Tensor): ``(N,)`` class index per example.
        additional_forward_args (Any): as Captum takes them: a tensor has ``N`` rows,
                    indexed per example, or one row, passed as is (checked).
        max_examples_per_batch (int, optional): jobs per forward pass; None: from
                    the pass budget.
        score (str): ``"probability"`` or ``"logit"``.
        return_all (bool, optional): return ``N x S x num_classes`` scores instead.
        check_target (bool, optional): check ``target_idx`` against the number of
                    classes of the first outputs (once), for callers that made no
                    unmasked pass (where :func:`target_indices` checks it).

    Returns:
        *Tensor*: ``N x S`` target scores (or all scores with ``return_all``).
    """
    num = inputs.shape[0]
    afa = _format_additional_forward_args(additional_forward_args)
    check_additional_forward_args(afa, inputs.shape[0])
    unchecked = [check_target]

    def job_scores(jobs: Tensor) -> Tensor:
        examples = torch.div(jobs, num_steps, rounding_mode="floor")
        steps = jobs - examples * num_steps
        scores = forward_scores(forward_func, build(examples, steps), examples, num, afa, score)
        if unchecked[0]:
            check_target_range(target_idx, scores.shape[1])
            unchecked[0] = False
        if return_all:
            return scores
        return scores.gather(1, target_idx[examples].unsqueeze(1)).squeeze(1)

    out = evaluate_in_chunks(
        job_scores,
        num * num_steps,
        max_examples_per_batch,
        inputs.device,
        row=inputs[0],
        model=forward_func,
    )
    if return_all:
        return out.reshape(num, num_steps, -1)
    return out.reshape(num, num_steps)


def joint_logits(
    forward_func: Callable,
    inputs: Tensor,
    target: TargetType,
    additional_forward_args: Any,
    max_examples_per_batch: Optional[int],
    num_steps: int,
    build: Callable[[Tensor, Tensor], Tensor],
) -> Tuple[Tensor, Tensor]:
    r"""
    The outputs of the inputs and of their ``N x num_steps`` perturbed copies, all
    in one chunked loop: every example's unmodified input is its row 0, so a pass
    holds unmodified and perturbed rows alike (one pass of ``2`` rows instead of two
    of ``1`` for a single image and mask). Inside :func:`shared_passes` the inputs'
    known outputs are taken instead of evaluated again.

    Args:
        forward_func (Callable): the model.
        inputs (Tensor): ``N x C x H x W`` inputs.
        target (int, list[int], Tensor or None): the class per example, as Captum
                    takes it; None: the predicted class.
        additional_forward_args (Any): as Captum takes them.
        max_examples_per_batch (int, optional): rows per forward pass; None: from
                    the pass budget.
        num_steps (int): ``S``, perturbations per example (at least 1).
        build (Callable): ``build(examples, steps)`` returns the perturbed inputs of
                    the jobs ``(examples[b], steps[b])``, ``steps`` in ``0 .. S-1``.

    Returns:
        *tuple*: ``(logits, idx)``: ``N x (S + 1) x num_classes`` outputs (column 0:
        the inputs) and the checked ``(N,)`` target indices.
    """
    afa = _format_additional_forward_args(additional_forward_args)
    check_additional_forward_args(afa, inputs.shape[0])
    shared = active_shared_passes()
    known = None if shared is None or afa is not None else shared.outputs(forward_func, inputs)
    if known is not None:
        idx = target_indices(target, _to_scores(known, "logit"))
        perturbed = perturbed_scores(
            forward_func, inputs, num_steps, build, idx, additional_forward_args,
            max_examples_per_batch, "logit", return_all=True,
        )  # fmt: skip
        return torch.cat([known.to(perturbed.dtype).unsqueeze(1), perturbed], dim=1), idx

    def with_inputs(examples: Tensor, steps: Tensor) -> Tensor:
        # rows of step 0 are the inputs themselves (selected without a host round trip)
        batch = build(examples, (steps - 1).clamp_min(0))
        unchanged = (steps == 0).view(-1, *([1] * (batch.dim() - 1)))
        return torch.where(unchanged, select_rows(inputs, examples), batch)

    num = inputs.shape[0]
    everyone = torch.zeros(num, dtype=torch.long, device=inputs.device)
    logits = perturbed_scores(
        forward_func, inputs, num_steps + 1, with_inputs, everyone, additional_forward_args,
        max_examples_per_batch, "logit", return_all=True,
    )  # fmt: skip
    return logits, target_indices(target, logits[:, 0])


class TargetScores(NamedTuple):
    r"""Target scores ``y`` (``(N,)``) and ``o`` (``N x S``), and with probabilities
    their logarithms, from which ratios are exact where ``y`` underflows to 0."""

    y: Tensor
    o: Tensor
    log_y: Optional[Tensor]
    log_o: Optional[Tensor]


def probability_scores(logits: Tensor, all_o: Tensor, target_idx: Tensor) -> TargetScores:
    r"""
    The softmax target probabilities of the inputs (``logits``, ``N x num_classes``)
    and of their perturbations (``all_o``, ``N x S x num_classes`` logits from
    :func:`perturbed_scores` with ``return_all``), with their float64 logarithms:
    the difference of those is exact to the logits' precision where a probability
    underflows to 0 (its logit far below the largest one).
    """
    column = target_idx.unsqueeze(1)
    y = scores_of(logits, "probability").gather(1, column).squeeze(1)
    log_y = torch.log_softmax(logits.to(torch.float64), dim=1).gather(1, column).squeeze(1)
    columns = column.unsqueeze(1).expand(-1, all_o.shape[1], 1)
    o = torch.softmax(all_o, dim=2).gather(2, columns).squeeze(2)
    log_o = torch.log_softmax(all_o.to(torch.float64), dim=2).gather(2, columns).squeeze(2)
    return TargetScores(y, o, log_y, log_o)


def relative_change(scores: TargetScores, metric: str, may_grow: bool = True) -> Tensor:
    r"""
    ``(o − y) / y``, ``N x S``, finite when ``y`` underflows.

    Where the probability ``y`` is 0 or subnormal (the target's logit is ~88 below
    the largest in float32, ~708 in float64), the quotient is taken as
    ``expm1(log o − log y)`` in float64 from the log-probabilities, its exact value.
    When that value is too large for the dtype (an increase from an underflowed
    ``y``), an error names the examples, unless ``may_grow`` is False (the caller
    keeps only the decrease, which is bounded by 1).
    """
    y = scores.y.unsqueeze(1)
    change = (scores.o - y) / y
    if scores.log_y is None or scores.log_o is None:
        return change
    tiny = y <= torch.finfo(y.dtype).tiny
    if not bool(tiny.any()):
        return change
    exact = torch.expm1(scores.log_o - scores.log_y.unsqueeze(1)).to(change.dtype)
    change = torch.where(tiny, exact, change)
    if may_grow and not bool(torch.isfinite(change).all()):
        rows = torch.nonzero(~torch.isfinite(change).all(dim=1)).flatten().tolist()
        raise ValueError(
            f"{metric}: the target probability of inputs {rows} underflows to "
            f"{float(scores.y[rows[0]]):.3g} in {y.dtype} and o/y exceeds its range; "
            "run the model in float64 (model.double(), inputs.double()) or choose "
            "another target"
        )
    return change


def check_metric_args(max_examples_per_batch: Any, score: str) -> None:
    r"""The checks every perturbation metric makes on its common options."""
    check_positive_int(max_examples_per_batch, "max_examples_per_batch")
    check_score(score)


def check_target_range(target_idx: Tensor, num_classes: int) -> None:
    r"""
    The range check :func:`target_indices` makes on the unmasked outputs, for a
    caller that makes no unmasked pass.

    Args:
        target_idx (Tensor): ``(N,)`` class indices.
        num_classes (int): the model's number of classes.

    Raises:
        ValueError: an index outside ``[0, num_classes)``, naming the target.
    """
    if bool(((target_idx < 0) | (target_idx >= num_classes)).any()):
        raise ValueError(
            f"target out of range: the model has {num_classes} classes; got {target_idx.tolist()}"
        )


def masked_scores(
    forward_func: Callable,
    x: Tensor,
    keep: KeepFunction,
    num_steps: int,
    target: TargetType,
    additional_forward_args: Any,
    max_examples_per_batch: Optional[int],
    score: str,
    baselines: BaselineLike,
    original: bool = True,
    return_all: bool = False,
) -> Tuple[Tensor, Optional[Tensor], Tensor]:
    r"""
    The sweep of threshold fine-tuning and threshold calibration: target scores of
    the inputs masked by ``keep(examples, steps)``
    (:mod:`captum_cams._utils.thresholding`; removed pixels become ``baselines``),
    in chunks, under ``torch.no_grad()``.

    With ``original`` (or ``target`` None, whose predicted class needs it) the
    unmasked inputs are evaluated first; otherwise only the ``N x num_steps``
    masked inputs are, and ``target`` is range-checked on their outputs.

    Returns:
        *tuple*: ``(o, y, idx)``: ``N x num_steps`` scores of the masked inputs
        (``N x num_steps x num_classes`` with ``return_all``), ``(N,)`` scores of
        the inputs (None when not evaluated) and the ``(N,)`` target indices.
    """
    with torch.no_grad(), preserved_model_state(forward_func):
        base = sweep_baseline(x, baselines)
        y: Optional[Tensor] = None
        evaluated = original or target is None
        if evaluated:
            y, idx, _ = original_scores(
                forward_func, x, target, additional_forward_args, max_examples_per_batch, score
            )
        else:
            idx = format_target(target, x.shape[0], x.device)

        def build(examples: Tensor, steps: Tensor) -> Tensor:
            kept = keep(examples, steps)
            return masked_rows(x, examples, kept, base)

        o = perturbed_scores(
            forward_func, x, num_steps, build, idx, additional_forward_args,
            max_examples_per_batch, score, return_all, check_target=not evaluated,
        )  # fmt: skip
    return o, y, idx
