#!/usr/bin/env python3
r"""TFT masks of a training set: the auxiliary targets of activation fine-tuning (AFT).

For every item ``(x, y)`` of a dataset, a CAM method's map of ``x`` is threshold
fine-tuned (:func:`~captum_cams.tuning.threshold_fine_tuning`), the binary mask
``M_τ* = 1[I_τ* ≠ 0]`` of the tuned map is taken and resized to the map's (the
layer's) resolution with area interpolation, i.e. each layer cell holds the fraction
of its input pixels that the mask keeps. The masks are computed once with the
original model. Where no threshold raises the probability (every RPI 0), the paper's
Algorithm 1 still returns the map at its first threshold ``T[0]`` (the arg-max of an
all-zero curve), so the mask is ``1[I ≥ T[0]]`` (``unchanged_masks="first_threshold"``);
``"unthresholded"`` gives ``1[I ≠ 0]`` of the untouched map instead (a departure).

The dataset is split into fixed shards of consecutive items. Each finished shard is
written to ``cache_dir`` atomically (a temporary file renamed into place), so an
interrupted run resumes by skipping the shards already on disk. The cache records
what made it (method and settings, a fingerprint of the model's parameters and
buffers, of the dataset and of the TFT options) and refuses to serve another. Under ``torchrun``
the shards are dealt out with :func:`~captum_cams._utils.distributed.shard_indices`
and merged with :func:`~captum_cams._utils.distributed.gather_by_index`; a shard is
computed the same way whichever process computes it, so any number of processes
returns the masks of one process.

Paper: Han, Lee & Lee, "Activation Fine-Tuning of Convolutional Neural Networks for
Improved Input Attribution Based on Class Activation Maps", Applied Sciences 12(24),
12961, 2022. https://www.mdpi.com/2076-3417/12/24/12961
"""

import json
import os
from pathlib import Path
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from captum.attr._utils.attribution import Attribution
from torch import Tensor
from torch.utils.data import Dataset

from captum_cams._utils.distributed import (
    barrier,
    gather_by_index,
    init_distributed_from_env,
    is_main_process,
    shard_indices,
)
from captum_cams._utils.files import (
    atomic_path,
    dataset_fingerprint,
    hash_tensors,
    load_weights_only,
)
from captum_cams._utils.guards import check_choice, check_positive_int
from captum_cams._utils.thresholding import (
    check_threshold_mode,
    check_thresholds,
    kept_counts,
    pixel_ranks,
    top_k_mask,
)
from captum_cams.tuning.threshold_fine_tuning import DEFAULT_TFT_THRESHOLDS, threshold_fine_tuning

PathLike = Union[str, "os.PathLike[str]"]

#: The values ``target`` accepts in :func:`generate_tft_masks`.
MASK_TARGETS: Tuple[str, ...] = ("label", "predicted")

#: The masks of items no threshold improves: Algorithm 1's first threshold, or ``1[I ≠ 0]``.
UNCHANGED_MASKS: Tuple[str, ...] = ("first_threshold", "unthresholded")

_META_FILE = "meta.json"


class TFTMasks(NamedTuple):
    r"""
    Result of :func:`generate_tft_masks`.

    Attributes:
        masks (Tensor): ``N x 1 x h x w`` float32 masks in ``[0, 1]`` at the map's
                    (layer) resolution, item ``i`` of the dataset in row ``i``.
        thresholds (Tensor): ``(N,)`` float32 ``τ*`` per item; NaN where every RPI
                    was 0 (TFT then returns the map unchanged; the mask is that of
                    the first threshold, Algorithm 1's ``T[0]``, or ``1[I ≠ 0]``
                    with ``unchanged_masks="unthresholded"``).

    Examples::

        >>> result = generate_tft_masks(model, LayerGradCam(model, model.layer4), dataset)
        >>> result.masks.shape, result.thresholds.isnan().sum()   # N x 1 x h x w, unchanged maps
    """

    masks: Tensor
    thresholds: Tensor


def _dataset_length(dataset: Any) -> int:
    try:
        return len(dataset)
    except TypeError:
        raise TypeError(
            f"dataset must be a map-style dataset with a length; got {type(dataset).__name__}"
        ) from None


def _item(dataset: Dataset, index: int) -> Tuple[Tensor, int]:
    item = dataset[index]
    if not isinstance(item, (tuple, list)) or len(item) < 2 or not isinstance(item[0], Tensor):
        raise TypeError(
            "dataset items must be (image tensor, label, ...) tuples; "
            f"item {index} is {type(item).__name__}"
        )
    return item[0], int(item[1])


def _device_of(model: Any) -> Optional[torch.device]:
    r"""The device of a module's first parameter; None for other callables."""
    if isinstance(model, torch.nn.Module):
        for param in model.parameters():
            return param.device
    return None


#: Version of the cache description; a cache of another version is refused.
_CACHE_FORMAT = 3  # 3: attribute_kwargs recorded (LayerGradCam's default is Captum's)


def _model_fingerprint(model: Any) -> str:
    r"""A hash of a module's parameters and buffers; a callable's qualified name."""
    if isinstance(model, torch.nn.Module):
        named = list(model.named_parameters()) + list(model.named_buffers())
        return f"{type(model).__qualname__}:{hash_tensors(named)}"
    return f"callable:{getattr(model, '__module__', '')}.{getattr(model, '__qualname__', '')}"


def _settings_of(attribution: Attribution) -> Dict[str, str]:
    r"""The method's own settings: plain values as written, tensors (and objects holding
    tensors, e.g. a reference library) by hash, modules by their name in the model."""
    model = attribution.forward_func
    names = (
        {id(m): n or "<model>" for n, m in model.named_modules()}
        if isinstance(model, torch.nn.Module)
        else {}
    )
    settings: Dict[str, str] = {}
    for key, value in sorted(vars(attribution).items()):
        if key == "forward_func" or key.startswith("_"):
            continue
        if isinstance(value, torch.nn.Module):
            settings[key] = f"module {names.get(id(value), type(value).__qualname__)}"
        elif value is None or isinstance(value, (bool, int, float, str)):
            settings[key] = repr(value)
        elif isinstance(value, (list, tuple)) and all(
            v is None or isinstance(v, (bool, int, float, str)) for v in value
        ):
            settings[key] = repr(list(value))
        elif isinstance(value, Tensor):
            settings[key] = hash_tensors([(key, value)])
        elif callable(getattr(value, "state_dict", None)):
            state = value.state_dict()
            tensors = [(k, v) for k, v in sorted(state.items()) if isinstance(v, Tensor)]
            plain = {k: repr(v) for k, v in sorted(state.items()) if not isinstance(v, Tensor)}
            settings[key] = f"{type(value).__qualname__}:{hash_tensors(tensors)}:{plain}"
        else:
            settings[key] = type(value).__qualname__
    return settings


def _cache_description(
    attribution: Attribution, dataset: Dataset, num_items: int, settings: Dict[str, Any]
) -> Dict[str, Any]:
    r"""Everything the cached masks depend on, as JSON values."""
    method = type(attribution)
    return {
        "format": _CACHE_FORMAT,
        "method": f"{method.__module__}.{method.__qualname__}",
        "method_settings": _settings_of(attribution),
        "model": _model_fingerprint(attribution.forward_func),
        "num_items": num_items,
        "dataset_sample": dataset_fingerprint(dataset, num_items),
        **settings,
    }


_WHAT_DIFFERS = {
    "method": "another CAM method",
    "method_settings": "other method settings (e.g. another layer)",
    "model": "another model (its parameters or buffers differ)",
    "num_items": "a dataset of another length",
    "dataset_sample": "another dataset (its sampled items differ)",
}


def _check_meta(cache: Path, meta: Dict[str, Any]) -> None:
    r"""Writes the cache's description once; refuses a cache made with other settings."""
    path = cache / _META_FILE
    if is_main_process():
        if cache.exists() and not cache.is_dir():
            raise NotADirectoryError(f"cache_dir {os.fspath(cache)!r} is a file, not a folder")
        cache.mkdir(parents=True, exist_ok=True)
        if not path.is_file():
            if any(cache.glob("shard_*.pt")):
                raise ValueError(
                    f"cache_dir {os.fspath(cache)!r} holds mask shards but no {_META_FILE}, "
                    "so what made them is unknown: use another cache_dir or delete it"
                )
            with atomic_path(path) as temporary:
                temporary.write_text(json.dumps(meta, indent=1, sort_keys=True))
    barrier()
    try:
        with open(path) as f:
            found = json.load(f)
    except (OSError, ValueError) as error:
        raise ValueError(
            f"cache_dir {os.fspath(cache)!r}: {_META_FILE} is unreadable ({error}): use "
            "another cache_dir or delete it"
        ) from None
    if found != meta:
        keys = sorted(set(found) | set(meta)) if isinstance(found, dict) else ["format"]
        differs = [k for k in keys if not isinstance(found, dict) or found.get(k) != meta.get(k)]
        reasons = ", ".join(_WHAT_DIFFERS.get(k, f"another {k}") for k in differs)
        raise ValueError(
            f"cache_dir {os.fspath(cache)!r} holds masks made with other settings: "
            f"{reasons} ({', '.join(differs)} differ); use another cache_dir or delete it"
        )


def _read_shard(
    path: Path, indices: Sequence[int], mask_size: Optional[Tuple[int, int]]
) -> Tuple[Tensor, Tensor]:
    r"""A cached shard, checked against the items it must hold."""
    saved = load_weights_only(path, "TFT mask shard")
    masks = saved.get("masks") if isinstance(saved, dict) else None
    taus = saved.get("thresholds") if isinstance(saved, dict) else None
    if (
        not isinstance(masks, Tensor)
        or not isinstance(taus, Tensor)
        or masks.dim() != 4
        or masks.shape[:2] != (len(indices), 1)
        or taus.shape != (len(indices),)
        or (mask_size is not None and tuple(masks.shape[-2:]) != mask_size)
    ):
        raise ValueError(
            f"{os.fspath(path)} is not the TFT mask shard of items {indices[0]}..{indices[-1]}: "
            "delete it (or the whole cache_dir) to compute it again"
        )
    return masks, taus


def _shard_masks(
    attribution: Attribution,
    dataset: Dataset,
    indices: Sequence[int],
    batch_size: int,
    target: str,
    mask_size: Optional[Tuple[int, int]],
    tft_kwargs: Dict[str, Any],
    unchanged_masks: str = "first_threshold",
    attribute_kwargs: Optional[Dict[str, Any]] = None,
) -> Tuple[Tensor, Tensor]:
    r"""Masks and ``τ*`` of the items ``indices``, in batches of ``batch_size``."""
    all_masks: List[Tensor] = []
    all_taus: List[Tensor] = []
    model = attribution.forward_func
    device = _device_of(model)
    for start in range(0, len(indices), batch_size):
        items = [_item(dataset, i) for i in indices[start : start + batch_size]]
        x = torch.stack([image for image, _ in items])
        x = x.to(device) if device is not None else x
        labels = torch.tensor([label for _, label in items], device=x.device)
        if target == "predicted":
            with torch.no_grad():
                labels = model(x).argmax(dim=1)
        maps = attribution.attribute(x, target=labels, **(attribute_kwargs or {}))
        if not isinstance(maps, Tensor) or maps.dim() not in (3, 4):
            raise TypeError(
                "attribution must return maps N x h x w or N x 1 x h x w; got "
                f"{type(maps).__name__}"
            )
        maps = maps.detach().reshape(maps.shape[0], 1, *maps.shape[-2:])
        result = threshold_fine_tuning(model, x, maps, target=labels, **tft_kwargs)
        keep = (result.tuned_maps != 0).to(torch.float32)
        unchanged = torch.isnan(result.thresholds)
        if unchanged_masks == "first_threshold" and bool(unchanged.any()):
            first = _first_threshold_masks(result.tuned_maps, tft_kwargs)
            keep = torch.where(unchanged.reshape(-1, 1, 1, 1), first, keep)
        size = mask_size if mask_size is not None else tuple(maps.shape[-2:])
        all_masks.append(F.interpolate(keep, size=size, mode="area").cpu())
        all_taus.append(result.thresholds.to(torch.float32).cpu())
    return torch.cat(all_masks), torch.cat(all_taus)


def _check_attribute_kwargs(attribute_kwargs: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    r"""``attribute_kwargs`` as a dict of plain values (str keys; bool, int, float, str
    or None values), which the cache's ``meta.json`` can record exactly."""
    if attribute_kwargs is None:
        return {}
    if not isinstance(attribute_kwargs, dict):
        raise TypeError(
            f"attribute_kwargs must be a dict or None; got {type(attribute_kwargs).__name__}"
        )
    for key, value in attribute_kwargs.items():
        if not isinstance(key, str):
            raise TypeError(f"attribute_kwargs: keys must be str; got {key!r}")
        if key in ("inputs", "target"):
            raise ValueError(f"attribute_kwargs: {key!r} is set by generate_tft_masks itself")
        if value is not None and not isinstance(value, (bool, int, float, str)):
            raise TypeError(
                f"attribute_kwargs[{key!r}] must be a bool, int, float, str or None (it is "
                f"recorded in the cache); got {type(value).__name__}"
            )
    return dict(sorted(attribute_kwargs.items()))


def _first_threshold_masks(maps: Tensor, tft_kwargs: Dict[str, Any]) -> Tensor:
    r"""``1[I_T[0] ≠ 0]`` of maps ``I`` in ``[0, 1]``: the mask at the first threshold
    (the smallest value, or the largest fraction of pixels kept)."""
    values = tft_kwargs["thresholds"]
    if tft_kwargs["threshold_mode"] == "value":
        return (maps >= min(values)).to(torch.float32)
    counts = kept_counts(values, tuple(maps.shape[-2:]), maps.device)[:1].expand(maps.shape[0])
    top = top_k_mask(pixel_ranks(maps), counts, tuple(maps.shape[-2:]), maps.dtype)
    return (maps * top != 0).to(torch.float32)


def generate_tft_masks(
    attribution: Attribution,
    dataset: Dataset,
    cache_dir: Optional[PathLike] = None,
    batch_size: int = 64,
    shard_size: int = 512,
    target: str = "label",
    mask_size: Optional[Tuple[int, int]] = None,
    thresholds: Sequence[float] = DEFAULT_TFT_THRESHOLDS,
    threshold_mode: str = "value",
    max_examples_per_batch: Optional[int] = None,
    show_progress: bool = True,
    unchanged_masks: str = "first_threshold",
    attribute_kwargs: Optional[Dict[str, Any]] = None,
) -> TFTMasks:
    r"""
    TFT masks ``M_τ*`` of every item of a dataset for one CAM method, the auxiliary
    targets of activation fine-tuning (:class:`ActivationFineTuner`).

    For each batch: ``maps = attribution.attribute(x, target=c, **attribute_kwargs)``, then
    :func:`threshold_fine_tuning` of the maps (one batched sweep over the
    candidate thresholds), the binary mask ``1[I_τ* ≠ 0]`` of the tuned maps at input
    resolution, resized to the maps' resolution (``mask_size``) with area
    interpolation (the fraction of kept input pixels per cell). Where TFT leaves a
    map unchanged (every RPI 0), the mask is the first threshold's, as Algorithm 1
    of the paper returns ``T[argmax RPI] = T[0]`` then (``1[I ≥ 0.1]`` with the
    default thresholds); ``unchanged_masks="unthresholded"`` gives ``1[I ≠ 0]``.

    Items are grouped into shards of ``shard_size`` consecutive items. With
    ``cache_dir``, each shard is saved there as soon as it is done (atomically) and
    shards already there are loaded instead of computed, so a second call — or one
    after an interruption — resumes. The cache's ``meta.json`` records what made
    the masks: the method's class and settings (its layer by name), a SHA-256 of
    the model's parameters and buffers, the dataset's length and a hash of 8
    evenly spaced items, and every option above but ``show_progress`` and
    ``max_examples_per_batch``; a cache whose record differs is refused with an
    error naming what differs (nothing in it is read or changed), and so is a
    shard file that is unreadable or not the shape its items need.
    Under ``torchrun`` (``WORLD_SIZE > 1``: the process group is joined here if it
    is not yet, gloo on CPU, nccl on GPU) each process computes its
    share of the shards and every process returns all masks, the same as one
    process returns. A progress bar (tqdm) is shown on the main process.

    The model is used as it is: put it in eval mode first.

    Paper: Han, Lee & Lee, Applied Sciences 2022 (activation fine-tuning).
    https://www.mdpi.com/2076-3417/12/24/12961

    Args:
        attribution (Attribution): a CAM method on the original model, e.g.
                    ``LayerGradCam(model, model.layer3)``; its ``attribute`` must take
                    ``target=`` and return ``N x 1 x h x w`` maps, and it must hold the
                    model as ``forward_func``.
        dataset (Dataset): map-style dataset of ``(image, label, ...)`` items,
                    images ``C x H x W`` (moved to the model's device).
        cache_dir (str or PathLike, optional): folder of the shard files. None: no
                    cache. Default: None
        batch_size (int, optional): items per CAM call. Default: 64
        shard_size (int, optional): items per cache file (and per unit of work under
                    ``torchrun``). Default: 512
        target (str, optional): ``"label"`` (the dataset's label, as the training
                    loss uses it) or ``"predicted"`` (the model's class).
                    Default: ``"label"``
        mask_size (tuple[int, int], optional): ``(h, w)`` of the masks. None: the
                    maps' size, i.e. the layer's resolution. Default: None
        thresholds (sequence of float, optional): TFT's candidates.
                    Default: ``(0.1, 0.2, ..., 1.0)``
        threshold_mode (str, optional): TFT's ``"value"`` (the paper) or ``"rank"``
                    thresholds. Default: ``"value"``
        max_examples_per_batch (int, optional): most masked inputs per forward pass
                    of TFT's sweep. None: all of a batch at once. Default: None
        show_progress (bool, optional): tqdm progress bar on the main process.
                    Default: True
        unchanged_masks (str, optional): the mask of an item whose every RPI is 0:
                    ``"first_threshold"`` (Algorithm 1: the map at ``T[0]``) or
                    ``"unthresholded"`` (``1[I ≠ 0]``, a departure).
                    Default: ``"first_threshold"``
        attribute_kwargs (dict, optional): further keyword arguments of every
                    ``attribution.attribute`` call, plain values only (they are part
                    of the cache's record), e.g. ``{"relu_attributions": True}`` for
                    Grad-CAM's paper map (:class:`LayerGradCam` has Captum's default,
                    no ReLU). Default: None

    Returns:
        *TFTMasks*: ``(masks, thresholds)``: ``N x 1 x h x w`` float32 masks and the
        ``(N,)`` ``τ*`` (NaN where unchanged), row ``i`` for item ``i``, on the CPU.

    Examples::

        >>> cam = LayerGradCam(model, model.layer3)
        >>> masks, taus = generate_tft_masks(
        ...     cam, train_set, cache_dir="tft_cache",
        ...     attribute_kwargs={"relu_attributions": True},
        ... )
        >>> masks.shape
        torch.Size([50000, 1, 8, 8])
    """
    if not isinstance(attribution, Attribution) or not callable(
        getattr(attribution, "forward_func", None)
    ):
        raise TypeError(
            "attribution must be a Captum Attribution holding its model as forward_func; "
            f"got {type(attribution).__name__}"
        )
    num_items = _dataset_length(dataset)
    if num_items < 1:
        raise ValueError("dataset must hold at least one item")
    check_positive_int(batch_size, "batch_size", allow_none=False)
    check_positive_int(shard_size, "shard_size", allow_none=False)
    check_choice(target, MASK_TARGETS, "target")
    check_choice(unchanged_masks, UNCHANGED_MASKS, "unchanged_masks")
    if mask_size is not None:
        if len(mask_size) != 2 or any(not isinstance(s, int) or s < 1 for s in mask_size):
            raise ValueError(f"mask_size must be two positive ints (h, w); got {mask_size!r}")
        mask_size = (int(mask_size[0]), int(mask_size[1]))
    values = check_thresholds(thresholds)
    check_threshold_mode(threshold_mode)
    attribute_kwargs = _check_attribute_kwargs(attribute_kwargs)
    tft_kwargs = dict(
        thresholds=values,
        threshold_mode=threshold_mode,
        max_examples_per_batch=max_examples_per_batch,
    )
    init_distributed_from_env()
    cache = Path(cache_dir) if cache_dir is not None else None
    if cache is not None:
        meta = _cache_description(
            attribution,
            dataset,
            num_items,
            {
                "shard_size": shard_size,
                "batch_size": batch_size,
                "target": target,
                "mask_size": list(mask_size) if mask_size is not None else None,
                "thresholds": list(values),
                "threshold_mode": threshold_mode,
                "unchanged_masks": unchanged_masks,
                "attribute_kwargs": attribute_kwargs,
            },
        )
        _check_meta(cache, meta)

    num_shards = (num_items + shard_size - 1) // shard_size
    mine = shard_indices(num_shards)
    results: List[Tuple[int, Tuple[Tensor, Tensor]]] = []
    from tqdm.auto import tqdm  # imported here: importing the package shows no widget warning

    progress = tqdm(
        total=sum(min(shard_size, num_items - s * shard_size) for s in mine),
        desc=f"TFT masks ({type(attribution).__name__})",
        unit="img",
        disable=not (show_progress and is_main_process()),
    )
    try:
        for shard in mine:
            indices = list(range(shard * shard_size, min((shard + 1) * shard_size, num_items)))
            path = cache / f"shard_{shard:06d}.pt" if cache is not None else None
            if path is not None and path.is_file():
                done = _read_shard(path, indices, mask_size)
            else:
                done = _shard_masks(
                    attribution, dataset, indices, batch_size, target, mask_size, tft_kwargs,
                    unchanged_masks, attribute_kwargs,
                )  # fmt: skip
                if path is not None:
                    with atomic_path(path) as temporary:
                        torch.save({"masks": done[0], "thresholds": done[1]}, temporary)
            results.append((shard, done))
            progress.update(len(indices))
    finally:
        progress.close()
    merged = gather_by_index(results)
    sizes = [tuple(masks.shape[-2:]) for masks, _ in merged]
    if len(set(sizes)) > 1:
        odd = next(i for i, size in enumerate(sizes) if size != sizes[0])
        where = f"cache_dir {os.fspath(cache)!r}: " if cache is not None else ""
        raise ValueError(
            f"{where}shard_{odd:06d}.pt holds {sizes[odd][0]}x{sizes[odd][1]} masks but "
            f"shard_000000.pt {sizes[0][0]}x{sizes[0][1]}: the cache is damaged; delete it"
        )
    return TFTMasks(
        masks=torch.cat([masks for masks, _ in merged]),
        thresholds=torch.cat([taus for _, taus in merged]),
    )
