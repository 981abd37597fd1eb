#!/usr/bin/env python3
r"""Libra-CAM: base maps from the best linear approximation of the head between the
layer and the target score, averaged over reference activations, filtered and
threshold-calibrated.

Algorithm 1 of the paper, for an input ``x`` and its target ``c``:

1. one forward and one backward: ``A = A(x)`` and ``g = ∂f_c/∂A`` with ``f_c`` the
   softmax probability (``score="logit"``: the logit in all three stages);
2. for every reference ``A_r`` of class ``c`` in the
   :class:`~captum_cams.ReferenceLibrary`, the base map
   ``I_r = up(mm(Σ_k g_k ⊙ (A_k − A_r,k)))`` — all ``R`` maps from the one gradient;
   ``Σ_hw Σ_k g ⊙ (A − A_r)`` is the first-order estimate of ``f_c(x) − f_c(x_r)``
   at the layer (Theorem 1);
3. reference filtering (:func:`~captum_cams.tuning.reference_filtering`):
   ``S_r = f_c(I_r ⊙ x)``, keep ``S_r ≥ mean(S) + std(S)``, ``L`` = mean of the kept;
4. threshold calibration (:func:`~captum_cams.tuning.threshold_calibration`):
   ``L_t = L ⊙ 1[L ≥ t]`` on ``L`` exactly as averaged (Algorithm 1 does not
   re-normalise it), ``t = 0.1, …, 1.0``, ``t* = argmax_t f_c(L_t ⊙ x)``.
   ``normalize_calibration=True`` min-max normalises ``L`` first — a departure from
   the paper, kept as an option (off by default). Candidates that keep nothing
   (``t`` above the maximum of ``L``, which averaging and upsampling bring below 1)
   are left out of the arg-max: their score is the baseline image's, and choosing
   one returned a blank map (seen on non-predicted classes, whose masked scores are
   all below the black image's). Where every candidate is blank the map is ``L``,
   uncalibrated, with one warning line.

The base maps are min-max normalised without an absolute epsilon (``mm`` of
``METHODS.md``), so their scale — the gradient of a probability of ``1e-9`` is
tiny — does not matter: wherever a base map is not constant it spans ``[0, 1]``.

``variant="authors"`` reproduces the authors' released code instead, exactly: the
gradient of the target's *logit*, filtering and calibration on the softmax
*probability*; the filter keeps ``S_r − f_c(x) ≥ mean(P) − std(P)`` of the positive
increases ``P`` (``rule="authors"`` of the filter); the calibration
(:func:`~captum_cams.tuning.threshold_calibration.threshold_calibration_authors`)
scores keep-fractions ``10·i %``, ``i = 0 … 9``, by pixel rank, increases clipped at
0, and returns the map one decile past the best-scored one — their off-by-one,
reproduced because the preset exists to match their code, not the paper.

All masked forward passes (``R`` for filtering, ``T`` for calibration, per example)
go through the shared chunked loop, ``internal_batch_size`` inputs at a time (by
default as many as the pass budget allows, :func:`~captum_cams.get_pass_budget`).
"""

import warnings
from typing import (
    Any,
    Callable,
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
from captum.log import log_usage
from torch import Tensor
from torch.nn import Module

from captum_cams._utils.batching import progress_bar
from captum_cams._utils.guards import (
    check_choice,
    check_positive_int,
    preserved_model_state,
)
from captum_cams._utils.maps import minmax_normalize, upsample
from captum_cams._utils.scores import check_score, scores_of
from captum_cams._utils.thresholding import check_threshold_mode, check_thresholds
from captum_cams.attr._base import CamContext, GradientCamBase
from captum_cams.attr._reshape import ReshapeTransform
from captum_cams.attr.reference_library import ReferenceLibrary
from captum_cams.tuning.reference_filtering import filter_rows
from captum_cams.tuning.threshold_calibration import (
    DEFAULT_CALIBRATION_THRESHOLDS,
    calibration_maps,
    threshold_calibration,
    threshold_calibration_authors,
)

#: The values ``variant`` accepts: the paper's Algorithm 1 or the authors' code.
LIBRA_VARIANTS: Tuple[str, ...] = ("paper", "authors")


class LibraCamDetails(NamedTuple):
    r"""
    The intermediate results of one :meth:`LayerLibraCam.attribute` call. Rows are
    (example, reference) pairs, grouped by example.

    Attributes:
        row_example (Tensor): ``(M,)`` the example of every row.
        reference_indices (Tensor): ``(M,)`` the library entry of every row (``-1``
                    without references).
        base_maps (Tensor): ``M x 1 x H x W`` the base maps ``I_r``.
        first_order (Tensor): ``(M,)`` ``Σ_hw Σ_k g ⊙ (A − A_r)``, the linear
                    estimate of ``f_c(x) − f_c`` at the reference activation.
        reference_scores (Tensor or None): ``(M,)`` ``S_r`` (None without filtering).
        kept (Tensor): ``(M,)`` bool, the rows averaged into ``L``.
        averaged_maps (Tensor): ``N x 1 x H x W`` ``L`` before calibration.
        thresholds (Tensor or None): ``(N,)`` ``t*`` (None without calibration;
                    ``variant="authors"``: the keep-fraction of the returned map).
        calibration_scores (Tensor or None): ``N x T`` the ``C_t``
                    (``variant="authors"``: the clipped increases).
        target (Tensor): ``(N,)`` the explained class per example.

    Examples::

        >>> maps, details = LayerLibraCam(net, net.layer4, library=library).attribute(
        ...     x, target=3, return_details=True)
        >>> details.kept.float().mean(), details.thresholds
    """

    row_example: Tensor
    reference_indices: Tensor
    base_maps: Tensor
    first_order: Tensor
    reference_scores: Optional[Tensor]
    kept: Tensor
    averaged_maps: Tensor
    thresholds: Optional[Tensor]
    calibration_scores: Optional[Tensor]
    target: Tensor


class LayerLibraCam(GradientCamBase):
    r"""
    Libra-CAM (Lee & Han, IJCAI 2022): the average of base maps
    ``I_r = up(mm(Σ_k g_k ⊙ (A_k − A_r,k)))`` over reference activations ``A_r`` of
    the target class — inputs the model finds very unlikely to be that class —
    followed by reference filtering and threshold calibration.

    Unlike the other CAMs of this package, :meth:`attribute` returns maps at the
    **input** resolution (``N x 1 x H x W``, in ``[0, 1]``), because the filtering
    and the calibration evaluate the model on masked inputs. The default follows
    Algorithm 1 of the paper as printed; ``variant="authors"`` is the authors'
    released code (see the module).

    Paper: Lee & Han, "Libra-CAM: An Activation-Based Attribution Based on the
    Linear Approximation of Deep Neural Nets and Threshold Calibration", IJCAI 2022,
    pp. 3185–3191. https://www.ijcai.org/proceedings/2022/0442

    Args:
        forward_func (Callable): The model, returning ``N x num_classes`` logits.
        layer (torch.nn.Module): The layer whose ``N x K x h x w`` output is used.
        device_ids (list[int], optional): as in Captum, for ``DataParallel``
                    models. Default: None
        library (ReferenceLibrary, optional): references built for this layer
                    (:meth:`ReferenceLibrary.build`). Required unless
                    ``attribute`` is called with ``use_references=False``.
                    Default: None
        reshape_transform (Callable, optional): turns the layer's output into
                    ``N x K x h x w`` (pytorch-grad-cam's argument; e.g.
                    :func:`~captum_cams.vit_reshape_transform`); the library must be
                    built with the same one. Default: None

    Examples::

        >>> library = ReferenceLibrary.build(net, net.layer3, train_loader, 10)
        >>> libra = LayerLibraCam(net, net.layer3, library=library)
        >>> maps = libra.attribute(x, target=3, internal_batch_size=64)
        >>> maps.shape            # input resolution
        torch.Size([2, 1, 32, 32])
    """

    def __init__(
        self,
        forward_func: Callable,
        layer: Module,
        device_ids: Union[None, List[int]] = None,
        library: Optional[ReferenceLibrary] = None,
        reshape_transform: Optional[ReshapeTransform] = None,
    ) -> None:
        if library is not None and not isinstance(library, ReferenceLibrary):
            raise TypeError(f"library must be a ReferenceLibrary; got {type(library).__name__}")
        GradientCamBase.__init__(self, forward_func, layer, device_ids, reshape_transform)
        self.library = library

    @overload  # type: ignore[override]  # its own options (references, calibration); no return_weights
    def attribute(
        self,
        inputs: Union[Tensor, Tuple[Tensor, ...]],
        target: TargetType = None,
        additional_forward_args: Any = None,
        attribute_to_layer_input: bool = False,
        internal_batch_size: Optional[int] = None,
        use_references: bool = True,
        filter_references: bool = True,
        calibrate: bool = True,
        thresholds: Sequence[float] = DEFAULT_CALIBRATION_THRESHOLDS,
        threshold_mode: str = "value",
        score: str = "probability",
        return_details: Literal[False] = False,
        normalize_calibration: bool = False,
        variant: str = "paper",
        show_progress: bool = False,
    ) -> Tensor: ...

    @overload
    def attribute(
        self,
        inputs: Union[Tensor, Tuple[Tensor, ...]],
        target: TargetType = None,
        additional_forward_args: Any = None,
        attribute_to_layer_input: bool = False,
        internal_batch_size: Optional[int] = None,
        use_references: bool = True,
        filter_references: bool = True,
        calibrate: bool = True,
        thresholds: Sequence[float] = DEFAULT_CALIBRATION_THRESHOLDS,
        threshold_mode: str = "value",
        score: str = "probability",
        *,
        return_details: Literal[True],
        normalize_calibration: bool = False,
        variant: str = "paper",
        show_progress: bool = False,
    ) -> Tuple[Tensor, "LibraCamDetails"]: ...

    @log_usage(part_of_slo=True)
    def attribute(
        self,
        inputs: Union[Tensor, Tuple[Tensor, ...]],
        target: TargetType = None,
        additional_forward_args: Any = None,
        attribute_to_layer_input: bool = False,
        internal_batch_size: Optional[int] = None,
        use_references: bool = True,
        filter_references: bool = True,
        calibrate: bool = True,
        thresholds: Sequence[float] = DEFAULT_CALIBRATION_THRESHOLDS,
        threshold_mode: str = "value",
        score: str = "probability",
        return_details: bool = False,
        normalize_calibration: bool = False,
        variant: str = "paper",
        show_progress: bool = False,
    ) -> Union[Tensor, Tuple[Tensor, LibraCamDetails]]:
        r"""
        Args:
            inputs (Tensor or tuple[Tensor, ...]): the image batch ``N x C x H x W``
                        (first, when the model takes several inputs).
            target (int, list[int], Tensor, optional): the class per example, as in
                        Captum. None: each example's predicted class. Default: None
            additional_forward_args (Any, optional): further arguments of
                        ``forward_func``. Default: None
            attribute_to_layer_input (bool, optional): use the layer's input
                        instead of its output (the library must be built the same
                        way). Default: False
            internal_batch_size (int, optional): most masked inputs per forward
                        pass in filtering and calibration. None: as many as the
                        pass budget allows (:func:`~captum_cams.get_pass_budget`).
                        Default: None
            use_references (bool, optional): R of the ablation: with False the only
                        "reference" is ``A_r = 0`` (one base map ``mm(Σ g ⊙ A)``).
                        Default: True
            filter_references (bool, optional): F of the ablation: reference
                        filtering; False averages all base maps. Default: True
            calibrate (bool, optional): C of the ablation: threshold calibration;
                        False returns ``L`` (``mm(L)`` with
                        ``normalize_calibration``). Default: True
            thresholds (sequence of float, optional): calibration candidates in
                        ``(0, 1]``. Default: ``(0.1, 0.2, ..., 1.0)``
            threshold_mode (str, optional): ``"value"`` (the paper) or ``"rank"``
                        (``t`` is the fraction of pixels kept, ``round(t·H·W)``;
                        not the authors' calibration, which is
                        ``variant="authors"``). Default: ``"value"``
            score (str, optional): ``f_c`` everywhere (gradient, filtering,
                        calibration): the softmax ``"probability"`` (the paper) or
                        the ``"logit"``. Default: ``"probability"``
            return_details (bool, optional): also return the
                        :class:`LibraCamDetails`. Default: False
            normalize_calibration (bool, optional): min-max normalise ``L``
                        before calibration (and before returning it uncalibrated).
                        A departure from Algorithm 1, which thresholds ``L`` as
                        averaged. Default: False
            variant (str, optional): ``"paper"`` (Algorithm 1 as printed) or
                        ``"authors"`` (the authors' released code, exactly, their
                        off-by-one included; it fixes ``score``, ``thresholds``,
                        ``threshold_mode`` and ``normalize_calibration``, which
                        must then keep their defaults). Default: ``"paper"``
            show_progress (bool, optional): a progress bar over the masked forward
                        passes of filtering and calibration. Default: False

        Returns:
            *Tensor* or (*Tensor*, *LibraCamDetails*): the maps ``N x 1 x H x W`` at
            input resolution, in ``[0, 1]``.

        Examples::

            >>> libra = LayerLibraCam(net, net.layer3, library=library)
            >>> maps = libra.attribute(x, target=[3, 7], internal_batch_size=64)
            >>> no_calibration = libra.attribute(x, target=[3, 7], calibrate=False)
            >>> authors = libra.attribute(x, target=[3, 7], variant="authors")
        """
        check_score(score)
        check_choice(variant, LIBRA_VARIANTS, "variant")
        if variant == "authors" and (
            score != "probability"
            or threshold_mode != "value"
            or normalize_calibration
            or tuple(thresholds) != tuple(DEFAULT_CALIBRATION_THRESHOLDS)
        ):
            raise ValueError(
                "variant='authors' fixes score, thresholds, threshold_mode and "
                "normalize_calibration (the authors' pipeline); leave them at their defaults"
            )
        authors = variant == "authors"
        check_positive_int(internal_batch_size, "internal_batch_size")
        values = check_thresholds(thresholds)
        check_threshold_mode(threshold_mode)
        if use_references and self.library is None:
            raise ValueError(
                "library is required with use_references=True: give "
                "LayerLibraCam(model, layer, library=ReferenceLibrary.build(...))"
            )
        formatted_inputs, formatted_args = self._format_cam_inputs(inputs, additional_forward_args)
        x = formatted_inputs[0].detach()
        size = tuple(x.shape[-2:])
        # the masked forwards take the image batch; further inputs travel as arguments
        extra = tuple(formatted_inputs[1:]) + tuple(formatted_args)
        afa = extra if extra else None
        bar = progress_bar(show_progress, "LayerLibraCam")
        with bar, preserved_model_state(self.forward_func):
            # the authors' code: gradient of the logit, filtering and calibration on the
            # probability
            context = self._capture(
                formatted_inputs, target, formatted_args, attribute_to_layer_input,
                score="logit" if authors else score,
            )  # fmt: skip
            if context.target.dim() != 1:
                raise ValueError(
                    "target must be a class per example for Libra-CAM (its references, "
                    "filtering and calibration are per class of an N x num_classes "
                    f"output); the model returns shape {tuple(context.outputs.shape)}: wrap "
                    "it so that it returns class scores (captum_cams.OutputAdapter's select=)"
                )
            activations, gradients = context.activations, self._weights(context)
            if score == "probability":
                _warn_on_vanished_gradients(gradients)
            if use_references:
                assert self.library is not None
                self.library.check_compatible(activations.shape[1:], context.outputs.shape[1])
            rows = self._base_maps(activations, gradients, context.target, use_references, size)
            row_example, reference_indices, base_maps, first_order = rows
            if filter_references:
                original = None
                if authors:
                    probabilities = scores_of(context.outputs.to(x.dtype), "probability")
                    original = probabilities.gather(1, context.target.unsqueeze(1)).squeeze(1)
                filtered = filter_rows(
                    self.forward_func, x, base_maps, row_example, context.target, afa,
                    internal_batch_size, score, rule=variant, original=original,
                )  # fmt: skip
                averaged, kept = filtered.filtered_maps, filtered.kept
                reference_scores: Optional[Tensor] = filtered.scores
            else:
                kept = torch.ones_like(row_example, dtype=torch.bool)
                averaged = _mean_per_example(base_maps, row_example, x.shape[0])
                reference_scores = None
            if calibrate and authors:
                calibration = threshold_calibration_authors(
                    self.forward_func, x, averaged, target=context.target,
                    additional_forward_args=afa, max_examples_per_batch=internal_batch_size,
                )  # fmt: skip
            elif calibrate:
                calibration = threshold_calibration(
                    self.forward_func, x, averaged, target=context.target,
                    additional_forward_args=afa, max_examples_per_batch=internal_batch_size,
                    thresholds=values, threshold_mode=threshold_mode, score=score,
                    normalize=normalize_calibration, allow_blank=False,
                )  # fmt: skip
            if calibrate:
                maps = calibration.calibrated_maps
                chosen: Optional[Tensor] = calibration.thresholds
                calibration_scores: Optional[Tensor] = calibration.scores
            else:
                maps = calibration_maps(averaged, x, normalize_calibration)
                chosen, calibration_scores = None, None
        if not return_details:
            return maps
        details = LibraCamDetails(
            row_example=row_example,
            reference_indices=reference_indices,
            base_maps=base_maps,
            first_order=first_order,
            reference_scores=reference_scores,
            kept=kept,
            averaged_maps=averaged,
            thresholds=chosen,
            calibration_scores=calibration_scores,
            target=context.target,
        )
        return maps, details

    def _weights(self, context: CamContext) -> Tensor:
        r"""Positional weights ``g = ∂f_c/∂A`` (``N x K x h x w``), as Layer-CAM's without ReLU."""
        assert context.gradients is not None
        return context.gradients

    def _base_maps(
        self,
        activations: Tensor,
        gradients: Tensor,
        target: Tensor,
        use_references: bool,
        size: Tuple[int, ...],
    ) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
        r"""
        ``(row_example, reference_indices, base_maps, first_order)`` of all
        (example, reference) rows: ``Σ_k g_k (A_k − A_r,k)`` for all references of an
        example at once from its one gradient, then ``up(mm(·))``.
        """
        examples: List[Tensor] = []
        indices: List[Tensor] = []
        raw_maps: List[Tensor] = []
        device = activations.device
        for example in range(activations.shape[0]):
            a, g = activations[example], gradients[example]
            if use_references:
                assert self.library is not None
                label = int(target[example])
                index = self.library.class_indices[label]
                if index.numel() == 0:
                    raise ValueError(
                        f"the reference library holds no reference for class {label} "
                        "(the target of example "
                        f"{example}): build it with more data or a larger tau"
                    )
                references = self.library.references(label, dtype=a.dtype, device=device)
            else:
                index = torch.full((1,), -1, dtype=torch.long)
                references = torch.zeros_like(a).unsqueeze(0)
            # positional weights g (as Layer-CAM's) on A - A_r = own map - each
            # reference's, weighted in the core; no ReLU: the base maps are min-max
            # normalised below
            own = self._map(g.unsqueeze(0), a.unsqueeze(0), False)
            raw = (own - self._weighted_sum_many(g, references)).squeeze(1)
            raw_maps.append(raw)
            indices.append(index.to(device))
            examples.append(torch.full((raw.shape[0],), example, dtype=torch.long, device=device))
        raw_all = torch.cat(raw_maps).unsqueeze(1)
        first_order = raw_all.sum(dim=(1, 2, 3))
        base_maps = upsample(minmax_normalize(raw_all), size)
        return torch.cat(examples), torch.cat(indices), base_maps, first_order


def _warn_on_vanished_gradients(gradients: Tensor) -> None:
    r"""Warns when the probability's gradient at the layer is exactly zero for an example."""
    blank = (gradients.flatten(1) == 0).all(dim=1).nonzero().flatten().tolist()
    if blank:
        warnings.warn(
            f"the target probability has a zero gradient at the layer for example(s) "
            f"{blank} (the softmax saturates: the probability underflows to 0 or "
            'rounds to 1), so their maps are blank; pass score="logit"',
            RuntimeWarning,
            stacklevel=4,
        )


def _mean_per_example(maps: Tensor, row_example: Tensor, num: int) -> Tensor:
    r"""``N x 1 x H x W`` mean of every example's rows."""
    sums = maps.new_zeros((num, *maps.shape[1:])).index_add_(0, row_example, maps)
    counts = torch.bincount(row_example, minlength=num).to(maps.dtype)
    return sums / counts.reshape(-1, 1, 1, 1)


__all__ = ["LayerLibraCam", "LibraCamDetails"]
