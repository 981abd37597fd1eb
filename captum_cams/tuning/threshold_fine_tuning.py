#!/usr/bin/env python3
r"""Threshold fine-tuning (TFT): keep only the part of a map above the threshold
that raises the target probability most.

For a map ``I = mm(up(attributions))`` in ``[0, 1]`` and every candidate ``τ``:
``I_τ = I ⊙ 1[I ≥ τ]``, ``M_τ = 1[I_τ ≠ 0]``, ``x̂_τ = M_τ ⊙ x`` and
``RPI(τ) = max(ŷ_c − y_c, 0) / y_c`` (softmax probabilities). The tuned map is
``I_τ*`` with ``τ* = argmax_τ RPI(τ)``. The curves are those of
:func:`captum_cams.metrics.threshold_sweep` (``binary=True``: its ``api`` is the RPI),
computed by the sweep TFT shares with Libra-CAM's threshold calibration: the masks
and the selection come from :mod:`captum_cams._utils.thresholding` (``sweep_keep``,
``first_argmax``; rank thresholds rank pixels with its ``pixel_ranks``), and all
``N x T`` masked inputs go through the model in one chunked loop
(:func:`captum_cams._utils.metric_scoring.masked_scores`). ``variant="authors"`` is the exact
setting of the authors' AFT code (rank thresholds keeping 0.9 … 0.1 of the pixels,
their ``int`` pixel counts, soft masks).

Cost: the ``N x T`` masked forward passes and one forward of the unmasked inputs
(for ``y_c``); :class:`ThresholdFineTuned` takes ``y_c`` from the forward pass it
makes anyway (the predicted class, or the wrapped CAM's own forward), so it adds
only the ``N x T`` masked passes to the wrapped method.

Paper: Han, Lee & Lee, "Activation Fine-Tuning of Convolutional Neural Networks for
Improved Input Attribution Based on Class Activation Maps", Applied Sciences 12(24),
12961, 2022. https://www.mdpi.com/2076-3417/12/24/12961
"""

import contextlib
import inspect
from typing import (
    Any,
    Callable,
    Dict,
    Iterator,
    List,
    Literal,
    NamedTuple,
    Optional,
    Sequence,
    Tuple,
    Union,
    overload,
)

import torch
from captum._utils.typing import TargetType
from captum.attr._utils.attribution import Attribution
from captum.log import log_usage
from torch import Tensor

from captum_cams._utils.baselines import BaselineLike
from captum_cams._utils.batching import progress_bar
from captum_cams._utils.guards import (
    check_choice,
    check_image_batch,
    preserved_model_state,
    target_indices,
)
from captum_cams._utils.masking import prepare_maps
from captum_cams._utils.metric_scoring import (
    active_shared_passes,
    check_metric_args,
    masked_scores,
    original_scores,
    probability_scores,
    relative_change,
)
from captum_cams._utils.scores import scores_of
from captum_cams._utils.thresholding import (
    check_threshold_mode,
    check_thresholds,
    first_argmax,
    support,
    sweep_keep,
)

#: TFT's candidate thresholds: the paper's ten values 0.1, 0.2, ..., 1.0.
DEFAULT_TFT_THRESHOLDS: Tuple[float, ...] = tuple(i / 10 for i in range(1, 11))

#: The values ``variant`` accepts: the paper's TFT or the authors' AFT code's.
TFT_VARIANTS: Tuple[str, ...] = ("paper", "authors")


class TFTResult(NamedTuple):
    r"""
    Result of :func:`threshold_fine_tuning`.

    Attributes:
        tuned_maps (Tensor): ``N x 1 x H x W`` maps at input resolution,
                    ``I_τ* = I ⊙ 1[I ≥ τ*]`` of the normalised map
                    ``I = mm(up(attributions))`` (``I ⊙ top(τ*)`` for rank
                    thresholds); ``I`` itself for an example whose RPI is 0 at
                    every threshold.
        thresholds (Tensor): ``(N,)`` the chosen ``τ*`` per example; NaN where the
                    map was returned unchanged (every RPI 0).
        rpi_curves (Tensor): ``N x T`` RPI per example and candidate threshold,
                    columns in the order of ``grid``.
        grid (Tensor): ``(T,)`` the candidate thresholds, ordered from the
                    largest mask to the smallest: ascending values, or descending
                    fractions kept for rank thresholds.

    Examples::

        >>> result = threshold_fine_tuning(net, x, maps, target=3)
        >>> result.thresholds, result.rpi_curves.shape   # tau* and the RPI curves
    """

    tuned_maps: Tensor
    thresholds: Tensor
    rpi_curves: Tensor
    grid: Tensor


@log_usage(part_of_slo=True)
def threshold_fine_tuning(
    forward_func: Callable,
    inputs: Tensor,
    attributions: Tensor,
    target: TargetType = None,
    additional_forward_args: Any = None,
    max_examples_per_batch: Optional[int] = None,
    thresholds: Sequence[float] = DEFAULT_TFT_THRESHOLDS,
    soft: bool = False,
    threshold_mode: str = "value",
    baselines: BaselineLike = None,
    variant: str = "paper",
    show_progress: bool = False,
) -> TFTResult:
    r"""
    Threshold fine-tuning (TFT) of attribution maps.

    With ``I = mm(up(attributions))`` (bilinear upsampling to the inputs' ``H x W``,
    ``align_corners=False``, then per-example min-max to ``[0, 1]``), for every
    candidate ``τ``: ``I_τ = I ⊙ 1[I ≥ τ]``, the binary mask ``M_τ = 1[I_τ ≠ 0]``,
    the masked input ``x̂_τ = M_τ ⊙ x`` (``I_τ ⊙ x`` with ``soft``) and
    ``RPI(τ) = max(ŷ_c − y_c, 0) / y_c`` with softmax probabilities ``y_c`` of ``x``
    and ``ŷ_c`` of ``x̂_τ``. Per example, ``τ* = argmax_τ RPI(τ)``; ties (exactly
    equal RPIs) go to the smallest ``τ``, i.e. the largest mask. The tuned map is
    ``I_τ*``. Where every RPI
    of an example is 0 (no threshold raises the probability), its tuned map is
    ``I`` unchanged (normalised and upsampled, not thresholded) and its ``τ*`` is
    NaN.

    With ``threshold_mode="rank"``, ``τ`` is instead the fraction of pixels kept:
    ``I_τ = I ⊙ top(τ)`` with ``top(τ)`` the binary mask of the ``round(τ·H·W)``
    highest pixels of ``I`` (ties by row-major index, as everywhere in
    :mod:`captum_cams.metrics`); ``M_τ = 1[I_τ ≠ 0]`` as above. Ties then go to the
    largest fraction, again the largest mask.

    ``variant="authors"`` is the setting of the authors' AFT code, exactly: their loop
    ``for i in range(1, 10)`` zeroes the lowest ``int(0.1·i·N)`` of the ``N = H·W``
    pixels, i.e. keeps the ``N − int(0.1·i·N)`` highest (fractions kept 0.9, 0.8, …,
    0.1; the rank mode's rounding differs from their truncation by one pixel at some
    fractions), masks softly (``I_τ ⊙ x``) and scores the RPI on one softmax. (Their
    example notebook applies the softmax twice, which squashes ``y_c`` to about
    0.001–0.002 and changes the decisions; that is a bug, not a setting, and is not
    reproduced.) The preset fixes ``thresholds``, ``soft`` and ``threshold_mode``,
    which must keep their defaults.

    The ``N x T`` masked inputs are evaluated in one sweep (the curves equal
    :func:`captum_cams.metrics.threshold_sweep`'s ``api`` with ``binary=True`` for
    value thresholds), at most ``max_examples_per_batch`` per forward pass (by
    default as many as the pass budget allows, :func:`~captum_cams.get_pass_budget`),
    under ``torch.no_grad()``, after one forward of the unmasked inputs.

    Paper: Han, Lee & Lee, "Activation Fine-Tuning of Convolutional Neural
    Networks for Improved Input Attribution Based on Class Activation Maps",
    Applied Sciences 2022 (threshold fine-tuning); the default thresholds are the
    paper's ten values. https://www.mdpi.com/2076-3417/12/24/12961

    Args:
        forward_func (Callable): The model, returning ``N x num_classes`` logits.
        inputs (Tensor): ``N x C x H x W`` images. Left unchanged; gradients are
                    never built.
        attributions (Tensor): maps ``N x h x w`` or ``N x 1 x h x w`` of any
                    spatial size (e.g. a CAM at layer resolution), without NaN.
        target (int, list[int], Tensor, optional): class per example, as Captum
                    takes it. None: each example's predicted class. Default: None
        additional_forward_args (Any, optional): further arguments of
                    ``forward_func``; tensors whose first dimension is ``N`` follow
                    their example into the chunks. Default: None
        max_examples_per_batch (int, optional): most inputs per forward pass.
                    None: as many as the pass budget allows. Default: None
        thresholds (sequence of float, optional): candidate ``τ``, each in
                    ``(0, 1]``, at least one; the order given does not matter.
                    Default: ``(0.1, 0.2, ..., 1.0)``
        soft (bool, optional): mask the input with the soft ``I_τ`` instead of the
                    binary ``M_τ``. The tuned map is ``I_τ*`` either way.
                    Default: False
        threshold_mode (str, optional): ``"value"``: ``τ`` thresholds the values of
                    ``I`` (the paper); ``"rank"``: ``τ`` is the fraction of pixels
                    kept (the authors' code). Default: ``"value"``
        baselines (str, float or Tensor, optional): what removed pixels become:
                    ``None``/``"zero"`` (the paper's ``M_τ ⊙ x``), ``"blur"``, a
                    constant or a tensor broadcastable to ``inputs``. Default: None
        variant (str, optional): ``"paper"`` or ``"authors"`` (the authors' AFT
                    code, see above). Default: ``"paper"``
        show_progress (bool, optional): a progress bar over the forward passes.
                    Default: False

    Returns:
        *TFTResult*: ``(tuned_maps, thresholds, rpi_curves, grid)``: the
        ``N x 1 x H x W`` tuned maps, ``τ*`` per example ``(N,)`` (NaN where
        unchanged), the ``N x T`` RPI curves and the ``(T,)`` candidates in the
        order of the curves' columns.

    Examples::

        >>> net = ImageClassifier()
        >>> cam = LayerGradCam(net, net.conv4)
        >>> x = torch.randn(2, 3, 32, 32)
        >>> maps = cam.attribute(x, target=3)          # N x 1 x 8 x 8
        >>> tuned, tau, rpi, grid = threshold_fine_tuning(net, x, maps, target=3)
        >>> tuned.shape, tau.shape, rpi.shape
        (torch.Size([2, 1, 32, 32]), torch.Size([2]), torch.Size([2, 10]))
    """
    check_image_batch(inputs)
    check_metric_args(max_examples_per_batch, "probability")
    values = check_thresholds(thresholds)
    check_threshold_mode(threshold_mode)
    setting = _setting(variant, values, soft, threshold_mode, inputs)
    with progress_bar(show_progress, "threshold_fine_tuning"):
        return _tune(
            forward_func, inputs.detach(), attributions, target, additional_forward_args,
            max_examples_per_batch, setting, baselines,
        )  # fmt: skip


#: The logits (``N x num_classes``) and class indices (``(N,)``) of the unmasked
#: inputs, when the caller already has them from its own forward pass.
OriginalScores = Tuple[Tensor, Tensor]


def _tune(
    forward_func: Callable,
    x: Tensor,
    attributions: Tensor,
    target: TargetType,
    additional_forward_args: Any,
    max_examples_per_batch: Optional[int],
    setting: "_Setting",
    baselines: BaselineLike,
    original: Optional[OriginalScores] = None,
) -> TFTResult:
    r"""
    TFT on checked arguments. ``I`` is made once and serves both the sweep and
    the tuned map; ``original`` (from a forward pass the caller made on ``x``
    anyway) saves the forward of the unmasked inputs.
    """
    with torch.no_grad(), preserved_model_state(forward_func):
        maps = prepare_maps(
            attributions, tuple(x.shape[-2:]), x.shape[0], dtype=x.dtype, device=x.device
        )
        values, soft, threshold_mode, counts = setting
        # the soft masks I_τ (pixels ranked once): the sweep masks with them or with
        # their support M_τ, and the tuned map is I_τ* itself
        soft_keep, grid = sweep_keep(maps, values, threshold_mode, counts=counts)
        keep = soft_keep if soft else support(soft_keep)
        if original is None:
            _, idx, logits = original_scores(
                forward_func, x, target, additional_forward_args, max_examples_per_batch, "logit"
            )
        else:
            logits, idx = original
        # inside shared_passes (the benchmark's batches) the same sweep of the same
        # maps, e.g. the TFT method's on Grad-CAM and the best-RPI metric of
        # Grad-CAM's maps, is evaluated once
        shared = active_shared_passes()
        key: Optional[Tuple[Any, ...]] = None
        if shared is not None and additional_forward_args is None and _plain(baselines):
            counted = None if counts is None else tuple(counts.tolist())
            key = ("tft", values, soft, threshold_mode, counted, baselines, max_examples_per_batch)
            known = shared.result(forward_func, x, key, (maps, idx))
            if known is not None:
                return known
        all_o, _, _ = masked_scores(
            forward_func, x, keep, grid.shape[0], idx, additional_forward_args,
            max_examples_per_batch, "logit", baselines, original=False, return_all=True,
        )  # fmt: skip
        # the RPI exactly as threshold_sweep's api: exact where y_c underflows, an
        # error where the increase exceeds the dtype
        scores = probability_scores(logits, all_o, idx)
        curves = torch.clamp(relative_change(scores, "threshold_sweep"), min=0)
        first_best = first_argmax(curves, allow_nan=True)  # a NaN row selects its last
        improved = curves.max(dim=1).values > 0
        tau = torch.where(improved, grid[first_best], torch.full_like(grid[first_best], torch.nan))
        kept = soft_keep(torch.arange(x.shape[0], device=x.device), first_best)
        tuned = torch.where(improved.reshape(-1, 1, 1, 1), kept, maps)
    result = TFTResult(tuned_maps=tuned, thresholds=tau, rpi_curves=curves, grid=grid)
    if shared is not None and key is not None:
        shared.remember_result(forward_func, x, key, (maps, idx), result)
    return result


def _plain(baselines: BaselineLike) -> bool:
    r"""A ``baselines`` value that can be compared as a key (not a tensor)."""
    return baselines is None or isinstance(baselines, (str, int, float))


#: The fractions of pixels the authors' AFT code keeps: 0.9, 0.8, ..., 0.1.
AUTHORS_KEPT_FRACTIONS: Tuple[float, ...] = tuple(round(1 - i / 10, 1) for i in range(1, 10))


def _check_variant(variant: str, values: Tuple[float, ...], soft: bool, threshold_mode: str) -> str:
    check_choice(variant, TFT_VARIANTS, "variant")
    if variant == "authors" and (
        values != tuple(DEFAULT_TFT_THRESHOLDS) or soft or threshold_mode != "value"
    ):
        raise ValueError(
            "variant='authors' fixes thresholds, soft and threshold_mode (the authors' "
            "setting); leave them at their defaults"
        )
    return variant


def _authors_kept_counts(size: Tuple[int, ...], device: torch.device) -> Tensor:
    r"""
    ``(9,)`` pixels kept by the authors' loop ``i = 1 … 9``: ``N − int(0.1·i·N)``
    (Python floats, as their code), in the order of :data:`AUTHORS_KEPT_FRACTIONS`.
    """
    num_pixels = size[0] * size[1]
    return torch.tensor(
        [num_pixels - int(0.1 * i * num_pixels) for i in range(1, 10)], device=device
    )


#: TFT's checked setting: ``(values, soft, threshold_mode, counts)``; ``counts``
#: (``(T,)`` pixels kept, descending) replaces ``round(τ·H·W)`` for the authors' preset.
_Setting = Tuple[Tuple[float, ...], bool, str, Optional[Tensor]]


def _setting(
    variant: str, values: Tuple[float, ...], soft: bool, threshold_mode: str, inputs: Tensor
) -> _Setting:
    r"""The setting TFT runs: the arguments as given, or the authors' preset."""
    if _check_variant(variant, values, soft, threshold_mode) == "authors":
        counts = _authors_kept_counts(tuple(inputs.shape[-2:]), inputs.device)
        return AUTHORS_KEPT_FRACTIONS, True, "rank", counts
    return values, soft, threshold_mode, None


class ThresholdFineTuned(Attribution):
    r"""
    Wraps any Captum attribution (Captum's :class:`captum.attr.LayerGradCam`, this
    package's :class:`~captum_cams.LayerGradCamPlusPlus`, :class:`~captum_cams.LayerCam`,
    :class:`~captum_cams.LayerAblationCam`, ...) into its threshold-fine-tuned
    version: :meth:`attribute` runs the wrapped method, then
    :func:`threshold_fine_tuning` on its maps, with the wrapped method's
    ``forward_func``.

    Paper: Han, Lee & Lee, Applied Sciences 2022 (threshold fine-tuning, TFT).
    https://www.mdpi.com/2076-3417/12/24/12961

    Args:
        attribution (Attribution): a Captum attribution whose ``attribute`` returns
                    one tensor of maps (``N x h x w`` or ``N x 1 x h x w``) and
                    which holds the model as ``forward_func``, as Captum's do.

    Examples::

        >>> from captum.attr import LayerGradCam
        >>> tuned_cam = ThresholdFineTuned(LayerGradCam(net, net.conv4))
        >>> maps = tuned_cam.attribute(x, target=3)     # N x 1 x H x W
        >>> maps, details = tuned_cam.attribute(x, target=3, return_details=True)
        >>> details.thresholds                          # τ* per example
    """

    def __init__(self, attribution: Attribution) -> None:
        if not isinstance(attribution, Attribution):
            raise TypeError(
                "attribution must be a Captum Attribution (e.g. captum.attr.LayerGradCam); "
                f"got {type(attribution).__name__}"
            )
        forward_func = getattr(attribution, "forward_func", None)
        if not callable(forward_func):
            raise TypeError("attribution must hold its model as a callable forward_func")
        Attribution.__init__(self, forward_func)
        self.attribution = attribution

    @overload
    def attribute(
        self,
        inputs: Tensor,
        target: TargetType = None,
        additional_forward_args: Any = None,
        attribute_to_layer_input: bool = False,
        max_examples_per_batch: Optional[int] = None,
        thresholds: Sequence[float] = DEFAULT_TFT_THRESHOLDS,
        return_details: Literal[False] = False,
        soft: bool = False,
        threshold_mode: str = "value",
        baselines: BaselineLike = None,
        variant: str = "paper",
        show_progress: bool = False,
    ) -> Tensor: ...

    @overload
    def attribute(
        self,
        inputs: Tensor,
        target: TargetType = None,
        additional_forward_args: Any = None,
        attribute_to_layer_input: bool = False,
        max_examples_per_batch: Optional[int] = None,
        thresholds: Sequence[float] = DEFAULT_TFT_THRESHOLDS,
        *,
        return_details: Literal[True],
        soft: bool = False,
        threshold_mode: str = "value",
        baselines: BaselineLike = None,
        variant: str = "paper",
        show_progress: bool = False,
    ) -> Tuple[Tensor, "TFTResult"]: ...

    @log_usage(part_of_slo=True)
    def attribute(
        self,
        inputs: Tensor,
        target: TargetType = None,
        additional_forward_args: Any = None,
        attribute_to_layer_input: bool = False,
        max_examples_per_batch: Optional[int] = None,
        thresholds: Sequence[float] = DEFAULT_TFT_THRESHOLDS,
        return_details: bool = False,
        soft: bool = False,
        threshold_mode: str = "value",
        baselines: BaselineLike = None,
        variant: str = "paper",
        show_progress: bool = False,
        **attribution_kwargs: Any,
    ) -> Union[Tensor, Tuple[Tensor, TFTResult]]:
        r"""
        Args:
            inputs (Tensor): ``N x C x H x W`` images; left unchanged.
            target (int, list[int], Tensor, optional): class per example, as Captum
                        takes it. None: each example's predicted class, found with
                        one forward pass and then given to both the wrapped method
                        and TFT (so they explain the same class). Default: None
            additional_forward_args (Any, optional): further arguments of
                        ``forward_func``, given to both. Default: None
            attribute_to_layer_input (bool, optional): passed to the wrapped
                        method's ``attribute`` (Captum's layer methods: the map of
                        the layer's input instead of its output); True needs a
                        wrapped method that takes it. Default: False
            max_examples_per_batch (int, optional): most masked inputs per forward
                        pass of TFT's sweep. None: as many as the pass budget
                        allows (:func:`~captum_cams.get_pass_budget`). Default: None
            thresholds (sequence of float, optional): TFT's candidates in
                        ``(0, 1]``. Default: ``(0.1, 0.2, ..., 1.0)``
            return_details (bool, optional): also return the :class:`TFTResult`.
                        Default: False
            soft (bool, optional): TFT's soft-mask option. Default: False
            threshold_mode (str, optional): ``"value"`` or ``"rank"``.
                        Default: ``"value"``
            baselines (str, float or Tensor, optional): what removed pixels become
                        in TFT's masked inputs. Default: None (zeros)
            variant (str, optional): ``"paper"`` or ``"authors"`` (the authors' AFT
                        code's setting, see :func:`threshold_fine_tuning`).
                        Default: ``"paper"``
            show_progress (bool, optional): one progress bar over the passes of
                        the wrapped method and of TFT's sweep. Default: False
            **attribution_kwargs (Any): further keyword arguments of the wrapped
                        method's ``attribute`` (e.g. ``relu_attributions``,
                        ``internal_batch_size``).

        Returns:
            *Tensor* or (*Tensor*, *TFTResult*): the tuned maps ``N x 1 x H x W``
            at input resolution, and the full result with ``return_details``.

        Examples::

            >>> tuned_cam = ThresholdFineTuned(LayerCam(net, net.conv4))
            >>> maps = tuned_cam.attribute(x, target=[3, 7], max_examples_per_batch=8)
        """
        check_image_batch(inputs)
        check_metric_args(max_examples_per_batch, "probability")
        values = check_thresholds(thresholds)
        check_threshold_mode(threshold_mode)
        setting = _setting(variant, values, soft, threshold_mode, inputs)
        attribution_kwargs = _with_layer_input(
            self.attribution, attribute_to_layer_input, attribution_kwargs
        )
        with progress_bar(show_progress, "ThresholdFineTuned"):
            result = self._tuned(
                inputs, target, additional_forward_args, max_examples_per_batch, setting,
                baselines, attribution_kwargs,
            )  # fmt: skip
        if return_details:
            return result.tuned_maps, result
        return result.tuned_maps

    def _tuned(
        self,
        inputs: Tensor,
        target: TargetType,
        additional_forward_args: Any,
        max_examples_per_batch: Optional[int],
        setting: "_Setting",
        baselines: BaselineLike,
        attribution_kwargs: Dict[str, Any],
    ) -> TFTResult:
        r"""The wrapped method's maps, then TFT on them, on checked arguments."""
        x = inputs.detach()
        original: Optional[OriginalScores] = None
        if target is None:
            # the predicted class needs the unmasked forward: its probabilities are
            # TFT's y as well
            with torch.no_grad(), preserved_model_state(self.forward_func):
                _, _, logits = original_scores(
                    self.forward_func, x, None, additional_forward_args,
                    max_examples_per_batch, "logit",
                )  # fmt: skip
            # the class of the highest probability, as the wrapper has always taken it
            target = target_indices(None, scores_of(logits, "probability"))
            original = (logits, target)
        with _observed_outputs(self.attribution, inputs) as seen:
            maps = self.attribution.attribute(
                inputs,
                target=target,
                additional_forward_args=additional_forward_args,
                **attribution_kwargs,
            )
        if not isinstance(maps, Tensor):
            raise TypeError(
                "the wrapped attribution must return one tensor of maps; got "
                f"{type(maps).__name__} (options such as return_weights are not supported)"
            )
        if (
            original is None
            and seen
            and (max_examples_per_batch is None or max_examples_per_batch >= x.shape[0])
        ):
            # the wrapped CAM's own forward of the whole batch is the unmasked
            # forward TFT needs (the same batch TFT's own forward would evaluate)
            original = (seen[0], target_indices(target, seen[0]))
        result = _tune(
            self.forward_func, x, maps, target, additional_forward_args,
            max_examples_per_batch, setting, baselines, original,
        )  # fmt: skip
        return result


def _with_layer_input(
    attribution: Attribution, attribute_to_layer_input: bool, kwargs: Dict[str, Any]
) -> Dict[str, Any]:
    r"""
    ``kwargs`` with ``attribute_to_layer_input`` for the wrapped ``attribute``
    where that names it; True is also handed to one that takes ``**kwargs``, and
    is an error naming the argument for one that takes neither. A False it cannot
    take is left out (not attributing to the layer input is its behaviour anyway).
    """
    if not isinstance(attribute_to_layer_input, bool):
        raise TypeError(
            "attribute_to_layer_input must be a bool; got "
            f"{type(attribute_to_layer_input).__name__}"
        )
    parameters = inspect.signature(attribution.attribute).parameters
    named = "attribute_to_layer_input" in parameters
    any_keyword = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    if named or (attribute_to_layer_input and any_keyword):
        return {**kwargs, "attribute_to_layer_input": attribute_to_layer_input}
    if attribute_to_layer_input:
        raise ValueError(
            "attribute_to_layer_input=True: the wrapped "
            f"{type(attribution).__name__}.attribute has no attribute_to_layer_input "
            "argument (it is not a layer attribution)"
        )
    return kwargs


@contextlib.contextmanager
def _observed_outputs(attribution: Attribution, inputs: Tensor) -> Iterator[List[Tensor]]:
    r"""
    Collects the model outputs of the forward pass a CAM of this package
    (:class:`~captum_cams.attr._base.CamBase`) makes on exactly ``inputs`` (the
    same tensor object, as the user gave it), so that TFT need not evaluate the
    unmasked inputs again. Other attributions are not observed (the list stays
    empty); the observer is removed on exit.
    """
    seen: List[Tensor] = []
    if not hasattr(attribution, "forward_observer"):
        yield seen
        return

    def observe(cam_inputs: Tuple[Tensor, ...], outputs: Tensor) -> None:
        if not seen and cam_inputs and cam_inputs[0] is inputs:
            seen.append(outputs)

    previous = attribution.forward_observer
    attribution.forward_observer = observe
    try:
        yield seen
    finally:
        attribution.forward_observer = previous
