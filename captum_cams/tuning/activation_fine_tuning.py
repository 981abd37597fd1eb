#!/usr/bin/env python3
r"""Activation fine-tuning (AFT): fine-tune a CNN so that its CAMs need less tuning.

A small tuner network reads the activations ``A`` of a chosen layer ℓ and is trained to
reproduce the TFT masks ``M_τ*`` of the training images
(:func:`~captum_cams.tuning.generate_tft_masks`), while the model keeps its
classification loss::

    L = CE(f(x; w1, w2), y) + λ · ‖tuner(A(x; w1)) − M_τ*(x)‖²

The layers before ℓ (``w0``) are frozen; layer ℓ (``w1``), the layers after it
(``w2``) and the tuner are trained. The tuner is dropped afterwards: the result is the
user's architecture with new weights, explained with any CAM method as before.

The authors published code for TFT only; this is built from the paper's description.
As the paper has it, by default: the mask target of Eq. 5 is binary at the layer's
resolution (``mask_target="binary"``: a cell is in the mask when at least half of its
input pixels are, i.e. the area-resized TFT mask of
:func:`~captum_cams.tuning.generate_tft_masks` rounded); the squared error is the
sum over the cells (``‖·‖²``, ``mask_reduction="sum"``), averaged over the batch like
the cross-entropy; and every item counts (``skip_unchanged=False``): where no threshold
raised the probability, Algorithm 1 still returns the map at its first threshold.
Options, off by default and departures from the paper: ``mask_target="area"`` (the
fractional area-averaged target), ``mask_reduction="mean"`` (the mean over the cells,
which scales λ by ``1/(h·w)``), ``skip_unchanged=True`` (items whose map TFT left
unchanged add nothing).
Choices made here, where the paper leaves them open: the tuner's output is squashed to
``[0, 1]`` with a sigmoid (the masks' range); "before ℓ" means the modules whose
forward starts before ℓ's in one forward pass; by default the model runs in eval mode
while it is trained (batch-norm running statistics are used and left unchanged), which
suits a short fine-tune on a subset.

Paper: Han, Lee & Lee, "Activation Fine-Tuning of Convolutional Neural Networks for
Improved Input Attribution Based on Class Activation Maps", Applied Sciences 12(24),
12961, 2022. https://www.mdpi.com/2076-3417/12/24/12961
"""

import copy
import math
from typing import Any, Dict, Iterator, List, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, Sampler
from torch.utils.data.distributed import DistributedSampler

from captum_cams._utils.capture import capture_layer, single_feature_map
from captum_cams._utils.distributed import (
    init_distributed_from_env,
    is_main_process,
)
from captum_cams._utils.guards import check_choice, check_layer_in_model, check_positive_int
from captum_cams.tuning.tft_masks import TFTMasks

#: The optimisers :meth:`ActivationFineTuner.fit` accepts.
OPTIMIZERS: Tuple[str, ...] = ("sgd", "adam")
#: The mask targets: binary at the layer's resolution (the paper) or the fractions.
MASK_TARGETS: Tuple[str, ...] = ("binary", "area")
#: How the squared error is reduced over a mask's cells: sum (Eq. 5) or mean.
MASK_REDUCTIONS: Tuple[str, ...] = ("sum", "mean")


class TunerNetwork(nn.Module):
    r"""
    AFT's tuner: ``1x1 conv K→3``, then ``1x1 conv 3→1``, then a sigmoid.

    It maps the layer's activations ``N x K x h x w`` to a mask ``N x 1 x h x w``.
    The paper describes the two 1x1 convolutions; the sigmoid is this package's
    choice for squashing the output to ``[0, 1]``, the range of the TFT masks it is
    trained to reproduce (it keeps gradients everywhere, unlike clamping). As in the
    paper, there is no non-linearity between the two convolutions.

    Args:
        in_channels (int): ``K``, the layer's channels.
        hidden_channels (int, optional): channels between the two convolutions.
                    Default: 3

    Examples::

        >>> tuner = TunerNetwork(64)
        >>> tuner(torch.randn(2, 64, 8, 8)).shape
        torch.Size([2, 1, 8, 8])
    """

    def __init__(self, in_channels: int, hidden_channels: int = 3) -> None:
        super().__init__()
        check_positive_int(in_channels, "in_channels", allow_none=False)
        check_positive_int(hidden_channels, "hidden_channels", allow_none=False)
        self.conv1 = nn.Conv2d(in_channels, hidden_channels, kernel_size=1)
        self.conv2 = nn.Conv2d(hidden_channels, 1, kernel_size=1)

    def forward(self, activations: Tensor) -> Tensor:
        r"""
        Args:
            activations (Tensor): ``N x K x h x w`` the layer's activations.

        Returns:
            *Tensor* of **masks**:
            - **masks** (*Tensor*):
                        ``N x 1 x h x w`` the predicted masks, in ``(0, 1)``.

        Examples::

            >>> TunerNetwork(64)(torch.randn(2, 64, 8, 8)).shape
            torch.Size([2, 1, 8, 8])
        """
        return torch.sigmoid(self.conv2(self.conv1(activations)))


class _ModelWithTuner(nn.Module):
    r"""The model and the tuner as one module (for one optimiser and for DDP)."""

    def __init__(self, model: nn.Module, layer: nn.Module, tuner: TunerNetwork) -> None:
        super().__init__()
        self.model = model
        self.tuner = tuner
        self._layer = [layer]  # a list: not registered a second time as a submodule

    def forward(self, x: Tensor) -> Tuple[Tensor, Tensor]:
        # Not Captum's _forward_layer_eval, on purpose: it hands out a clone of the
        # layer's output, and a tuner reading the clone instead of the tensor the model
        # reads changes the order in which autograd sums ℓ's gradient whenever ℓ's
        # output has more than one consumer (a ResNet block inside a stage): the
        # trained weights then differ in the last bits (1.5e-6 after three float32 SGD
        # steps at resnet20's layer2.2). This hook keeps the tensor itself, changes
        # nothing in the forward, and is removed in ``finally`` after every pass.
        captured: List[Tensor] = []

        def keep(module: nn.Module, inputs: Any, output: Any) -> None:
            captured.append(output)

        handle = self._layer[0].register_forward_hook(keep)
        try:
            logits = self.model(x)
        finally:
            handle.remove()
        if len(captured) != 1 or not isinstance(captured[0], Tensor) or captured[0].dim() != 4:
            raise ValueError(
                "layer must be called once per forward pass and return an N x K x h x w tensor"
            )
        return logits, self.tuner(captured[0])


class _IndexedDataset(Dataset):
    r"""Items ``(image, label, index)``: the index finds the item's mask."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> Tuple[Tensor, int, int]:
        item = self.dataset[index]
        return item[0], int(item[1]), index


class _SeededPermutation(Sampler):
    r"""
    One process's sampler: the permutation ``DistributedSampler`` draws
    (``torch.randperm`` with seed ``seed + epoch``), so that a batch of ``B`` items
    per process on ``P`` processes covers the items of a batch of ``P·B`` here.
    """

    def __init__(self, num_items: int, seed: int) -> None:
        self.num_items = num_items
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_items

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator()
        generator.manual_seed(self.seed + self.epoch)
        return iter(torch.randperm(self.num_items, generator=generator).tolist())


class _LayerReached(Exception):
    pass


def _modules_before(model: nn.Module, layer: nn.Module, example: Tensor) -> List[nn.Module]:
    r"""
    The modules whose forward starts before ``layer``'s in one forward pass of
    ``example``, except those that contain ``layer`` (its ancestors).
    """
    # Not a capture: this records the order in which modules start, which
    # _forward_layer_eval cannot give (it returns the listed layers' tensors in the
    # order listed and needs every listed module to run), so it keeps its own
    # pre-hooks on every module; they append the module, stop the pass at ``layer``
    # (nothing after it runs) and are removed in ``finally``.
    order: List[nn.Module] = []

    def record(module: nn.Module, inputs: Any) -> None:
        if module is layer:
            raise _LayerReached
        order.append(module)

    handles = [m.register_forward_pre_hook(record) for m in model.modules()]
    reached = False
    try:
        with torch.no_grad():
            model(example)
    except _LayerReached:
        reached = True
    finally:
        for handle in handles:
            handle.remove()
    if not reached:
        raise ValueError("layer is not called in the model's forward pass")
    return [m for m in order if not any(sub is layer for sub in m.modules())]


def _layer_channels(model: nn.Module, layer: nn.Module, example: Tensor) -> int:
    r"""``K`` of the layer's ``N x K x h x w`` output."""
    with torch.no_grad():
        layer_tensors, _ = capture_layer(model, example, layer)
    return int(single_feature_map(layer_tensors).shape[1])


def _check_masks(
    masks: Union[Tensor, TFTMasks], num_items: int, skip_unchanged: bool, mask_target: str
) -> Tuple[Tensor, Tensor]:
    r"""The mask rows (binarised for ``mask_target="binary"``) and each item's weight in
    the squared error (0 or 1)."""
    weights = None
    if isinstance(masks, TFTMasks):
        if skip_unchanged:
            weights = (~torch.isnan(masks.thresholds)).to(torch.float32).reshape(-1)
        masks = masks.masks
    if not isinstance(masks, Tensor):
        raise TypeError(f"masks must be a Tensor N x 1 x h x w; got {type(masks).__name__}")
    if masks.dim() != 4 or masks.shape[1] != 1:
        raise ValueError(f"masks must be N x 1 x h x w; got shape {tuple(masks.shape)}")
    if masks.shape[0] != num_items or (weights is not None and weights.shape[0] != num_items):
        raise ValueError(
            f"masks must have one row per dataset item: {masks.shape[0]} rows for {num_items} items"
        )
    if not torch.isfinite(masks).all() or masks.min() < 0 or masks.max() > 1:
        raise ValueError("masks must hold finite values in [0, 1]")
    if weights is None:
        weights = torch.ones(num_items)
    if mask_target == "binary":  # a cell is in the mask when most of its pixels are
        masks = (masks >= 0.5).to(masks.dtype)
    return masks.detach(), weights


class ActivationFineTuner:
    r"""
    Activation fine-tuning (AFT) of a CNN classifier at one layer.

    :meth:`fit` trains a copy of ``model`` and a :class:`TunerNetwork` on
    ``CE(f(x), y) + λ · ‖tuner(A_ℓ(x)) − M_τ*(x)‖²`` (Eq. 5 and 8 of the paper), with
    the TFT masks ``M_τ*`` of :func:`~captum_cams.tuning.generate_tft_masks` made
    binary at ℓ's resolution.
    The modules that run before ℓ are frozen (their parameters and buffers are
    left bit-identical); ℓ, everything after it and the tuner are trained. The
    activations are captured with a forward hook that is removed after every
    forward pass. :meth:`fit` returns the copy as an ordinary module of the user's
    architecture — no tuner, no hooks, no ``DistributedDataParallel`` wrapper —
    with the user's train/eval modes and ``requires_grad`` flags; the user's model
    is never changed. The trained tuner stays available as :attr:`tuner`.

    Under ``torchrun`` (``WORLD_SIZE > 1``; gloo on CPU, nccl on GPU) :meth:`fit`
    joins the process group, wraps the model and tuner in
    ``DistributedDataParallel`` and deals the items out with
    ``DistributedSampler``; ``batch_size`` is then per process. In one process
    the same permutation of the items is drawn, so ``P`` processes with batch ``B``
    see the items of one process with batch ``P·B``.

    Paper: Han, Lee & Lee, "Activation Fine-Tuning of Convolutional Neural
    Networks for Improved Input Attribution Based on Class Activation Maps",
    Applied Sciences 2022. https://www.mdpi.com/2076-3417/12/24/12961
    (no authors' code exists for AFT; the choices made are listed in
    :mod:`captum_cams.tuning.activation_fine_tuning`).

    Args:
        model (nn.Module): the trained classifier, returning logits.
        layer (nn.Module): the layer ℓ of ``model`` whose output (``N x K x h x w``)
                    the tuner reads, the CAM layer the masks were made for.
        mask_weight (float, optional): λ, the weight of the tuner's squared error.
                    Default: 1.0
        hidden_channels (int, optional): the tuner's middle channels. Default: 3

    Examples::

        >>> cam = LayerGradCam(model, model.layer3)
        >>> masks = generate_tft_masks(cam, train_subset, cache_dir="tft_cache").masks
        >>> tuner = ActivationFineTuner(model, model.layer3, mask_weight=1.0)
        >>> tuned_model = tuner.fit(train_subset, masks, epochs=1, lr=1e-3)
        >>> LayerGradCam(tuned_model, tuned_model.layer3).attribute(x, target=3)
    """

    def __init__(
        self,
        model: nn.Module,
        layer: nn.Module,
        mask_weight: float = 1.0,
        hidden_channels: int = 3,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}")
        check_layer_in_model(model, layer)
        if not isinstance(mask_weight, (int, float)) or not math.isfinite(mask_weight):
            raise TypeError(f"mask_weight must be a finite number; got {mask_weight!r}")
        if mask_weight < 0:
            raise ValueError(f"mask_weight must be non-negative; got {mask_weight}")
        check_positive_int(hidden_channels, "hidden_channels", allow_none=False)
        self.model = model
        self.layer = layer
        self.layer_name = next(name for name, m in model.named_modules() if m is layer)
        self.mask_weight = float(mask_weight)
        self.hidden_channels = hidden_channels
        #: The trained tuner, after :meth:`fit`.
        self.tuner: Optional[TunerNetwork] = None
        #: Per epoch: mean ``loss``, ``ce`` and ``mse`` over this process's batches.
        self.history: List[Dict[str, float]] = []

    def fit(
        self,
        dataset: Dataset,
        masks: Union[Tensor, TFTMasks],
        epochs: int = 1,
        batch_size: int = 64,
        lr: float = 1e-3,
        optimizer: str = "sgd",
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        train_mode: bool = False,
        skip_unchanged: bool = False,
        seed: int = 0,
        show_progress: bool = True,
        mask_target: str = "binary",
        mask_reduction: str = "sum",
    ) -> nn.Module:
        r"""
        Trains a copy of the model (from ℓ on) and a new tuner; returns the copy.

        Args:
            dataset (Dataset): map-style dataset of ``(image, label, ...)`` items,
                        the items the masks were made for, in the same order.
            masks (Tensor or TFTMasks): ``N x 1 x h x w`` masks in ``[0, 1]``, row
                        ``i`` for item ``i``, ``h x w`` the layer's resolution, or
                        the result of :func:`~captum_cams.tuning.generate_tft_masks`.
            epochs (int, optional): passes over the dataset. Default: 1
            batch_size (int, optional): items per step (per process under
                        ``torchrun``). Default: 64
            lr (float, optional): learning rate. Default: 1e-3
            optimizer (str, optional): ``"sgd"`` (with ``momentum``) or ``"adam"``.
                        Default: ``"sgd"``
            momentum (float, optional): SGD momentum. Default: 0.9
            weight_decay (float, optional): weight decay of the trained
                        parameters. Default: 0.0
            train_mode (bool, optional): run the trained part in train mode
                        (batch statistics in batch norm, dropout on; the frozen part
                        stays in eval mode). False: eval mode throughout, batch-norm
                        running statistics used and kept. Default: False
            skip_unchanged (bool, optional): with :class:`TFTMasks`, items whose
                        ``τ*`` is NaN — TFT left their map unchanged because no
                        threshold raised the probability, typical of images the
                        model is already sure of — add nothing to the squared error
                        (their weight is 0; the mean is still over the whole batch).
                        A departure from the paper, whose Algorithm 1 returns a map
                        for every item and whose Eq. 8 sums over all items; their
                        mask ``1[I ≠ 0]`` covers almost everything. Default: False
            seed (int, optional): seeds the tuner's initial weights and the order of
                        the items. Default: 0
            show_progress (bool, optional): tqdm progress bar on the main process.
                        Default: True
            mask_target (str, optional): ``"binary"``: the target is binary at the
                        layer's resolution, ``1[m ≥ 0.5]`` of the given masks (a cell
                        is in the mask when at least half of its input pixels are;
                        binary masks stay as they are), as Eq. 5; ``"area"``: the
                        masks as given (the fractions of kept pixels per cell that
                        :func:`~captum_cams.tuning.generate_tft_masks` returns), a
                        departure. Default: ``"binary"``
            mask_reduction (str, optional): ``"sum"``: the squared error summed over
                        the mask's cells, ``‖·‖²`` of Eq. 5; ``"mean"``: averaged over
                        them, which scales λ by ``1/(h·w)``. Either way it is then
                        averaged over the batch, like the cross-entropy.
                        Default: ``"sum"``

        Returns:
            *nn.Module* of **tuned_model**:
            - **tuned_model** (*nn.Module*):
                        the fine-tuned model, a copy of ``model`` with the same
                        architecture, modes and ``requires_grad`` flags (the tuner
                        is kept in :attr:`tuner`, the losses in :attr:`history`).

        Examples::

            >>> fine_tuner = ActivationFineTuner(model, model.layer3, mask_weight=1.0)
            >>> tuned_model = fine_tuner.fit(train_subset, masks, epochs=1, lr=1e-3)
            >>> fine_tuner.history[0]   # mean loss, ce and mse of the epoch
            {'loss': ..., 'ce': ..., 'mse': ...}
        """
        num_items = len(dataset)  # type: ignore[arg-type]
        if num_items < 1:
            raise ValueError("dataset must hold at least one item")
        check_choice(mask_target, MASK_TARGETS, "mask_target")
        check_choice(mask_reduction, MASK_REDUCTIONS, "mask_reduction")
        mask_rows, mask_weights = _check_masks(masks, num_items, skip_unchanged, mask_target)
        check_positive_int(epochs, "epochs", allow_none=False)
        check_positive_int(batch_size, "batch_size", allow_none=False)
        if not isinstance(lr, (int, float)) or not lr > 0:
            raise ValueError(f"lr must be a positive number; got {lr!r}")
        check_choice(optimizer, OPTIMIZERS, "optimizer")

        tuned = copy.deepcopy(self.model)
        layer = tuned.get_submodule(self.layer_name)
        first = dataset[0]
        param = next(tuned.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
        dtype = param.dtype if param is not None else torch.float32
        example = first[0].unsqueeze(0).to(device=device, dtype=dtype)
        tuned.eval()
        frozen_modules = _modules_before(tuned, layer, example)
        frozen = {id(p) for m in frozen_modules for p in m.parameters()}
        channels = _layer_channels(tuned, layer, example)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            tuner = TunerNetwork(int(channels), self.hidden_channels).to(device, dtype)

        modes = {name: m.training for name, m in self.model.named_modules()}
        flags = {name: p.requires_grad for name, p in self.model.named_parameters()}
        trained = []
        for p in tuned.parameters():
            p.requires_grad_(id(p) not in frozen)
            if id(p) not in frozen:
                trained.append(p)
        trained += list(tuner.parameters())

        combined = _ModelWithTuner(tuned, layer, tuner)
        distributed = init_distributed_from_env()
        indexed = _IndexedDataset(dataset)
        sampler: Union[DistributedSampler, _SeededPermutation]
        if distributed:
            sampler = DistributedSampler(indexed, shuffle=True, seed=seed)
            runner: nn.Module = DistributedDataParallel(
                combined, device_ids=[device] if device.type == "cuda" else None
            )
        else:
            sampler = _SeededPermutation(num_items, seed)
            runner = combined
        loader = DataLoader(indexed, batch_size=batch_size, sampler=sampler)
        if optimizer == "sgd":
            opt: torch.optim.Optimizer = torch.optim.SGD(
                trained, lr=lr, momentum=momentum, weight_decay=weight_decay
            )
        else:
            opt = torch.optim.Adam(trained, lr=lr, weight_decay=weight_decay)

        self.history = []
        try:
            for epoch in range(epochs):
                sampler.set_epoch(epoch)
                tuned.train(train_mode)
                tuner.train(train_mode)
                for m in frozen_modules:
                    m.eval()
                totals = {"loss": 0.0, "ce": 0.0, "mse": 0.0}
                steps = 0
                from tqdm.auto import tqdm  # here: importing the package shows no warning

                bar = tqdm(
                    loader,
                    desc=f"AFT epoch {epoch + 1}/{epochs}",
                    disable=not (show_progress and is_main_process()),
                )
                for x, y, index in bar:
                    x = x.to(device=device, dtype=dtype)
                    y = y.to(device)
                    target_masks = mask_rows[index].to(device=device, dtype=dtype)
                    weights = mask_weights[index].to(device=device, dtype=dtype)
                    logits, predicted_masks = runner(x)
                    if predicted_masks.shape != target_masks.shape:
                        raise ValueError(
                            f"masks are {tuple(target_masks.shape[-2:])} per item but the "
                            f"layer's output is {tuple(predicted_masks.shape[-2:])}: make "
                            "the masks at the layer's resolution"
                        )
                    ce = F.cross_entropy(logits, y)
                    squared = (predicted_masks - target_masks).pow(2).flatten(1)
                    squared = squared.sum(1) if mask_reduction == "sum" else squared.mean(1)
                    mse = (weights * squared).mean()
                    loss = ce + self.mask_weight * mse
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    totals["loss"] += float(loss.detach())
                    totals["ce"] += float(ce.detach())
                    totals["mse"] += float(mse.detach())
                    steps += 1
                    bar.set_postfix(loss=f"{totals['loss'] / steps:.4f}")
                bar.close()
                self.history.append({k: v / max(steps, 1) for k, v in totals.items()})
        finally:
            for name, m in tuned.named_modules():
                m.training = modes[name]
            for name, p in tuned.named_parameters():
                p.requires_grad_(flags[name])
                p.grad = None
            tuner.eval()
            for p in tuner.parameters():
                p.grad = None
        self.tuner = tuner
        return tuned
