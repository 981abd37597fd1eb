#!/usr/bin/env python3
"""The dataset scan behind :meth:`~captum_cams.ReferenceLibrary.build`: the qualifying
inputs of a loader and their activations at the layer, sharded across processes under
``torchrun`` and gathered in the loader's order. The library's container and file format
are in :mod:`captum_cams.attr.reference_library`."""

from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple, Union

import torch
from torch import Tensor
from torch.nn import Module

from captum_cams._utils.capture import capture_layer, single_feature_map
from captum_cams._utils.distributed import (
    gather_by_index,
    is_main_process,
    rank_and_world_size,
    shard_indices,
)
from captum_cams._utils.guards import check_output_tensor, preserved_model_state
from captum_cams.attr._reshape import reshaped

#: a candidate reference: (its position in the loader, (its activation, the classes it serves))
Candidate = Tuple[int, Tuple[Tensor, List[int]]]


def scan_references(
    forward_func: Callable,
    layer: Module,
    dataloader: Iterable[Any],
    num_classes: int,
    tau: float,
    max_per_class: int,
    min_confidence: Optional[float],
    dtype: torch.dtype,
    device: Optional[Union[str, torch.device]],
    additional_forward_args: Any,
    attribute_to_layer_input: bool,
    progress: bool,
    reshape_transform: Optional[Callable[[Tensor], Tensor]],
) -> List[Candidate]:
    r"""
    The inputs of ``dataloader`` with ``softmax_c(model(x)) < tau`` for some class ``c``
    still short of ``max_per_class`` references (and, with ``min_confidence``, classified
    correctly that confidently), each with its activation at ``layer`` stored once in
    ``dtype`` on the CPU, in the loader's order on every process. The arguments are those of
    :meth:`~captum_cams.ReferenceLibrary.build`, already checked.
    """
    if device is None:
        owner = forward_func if isinstance(forward_func, Module) else layer
        first = next(owner.parameters(), None)
        device = first.device if first is not None else torch.device("cpu")
    length = _length(dataloader)
    # batches of this process: shard_indices when the loader has a length, else
    # the same rank-strided rule batch by batch
    mine = set(shard_indices(length)) if length is not None else None
    rank, world = rank_and_world_size()

    local_lists: List[List[int]] = [[] for _ in range(num_classes)]
    stored: Dict[int, Tuple[Tensor, List[int]]] = {}

    iterator: Iterable[Any] = dataloader
    if progress and is_main_process():
        from tqdm.auto import tqdm

        iterator = tqdm(dataloader, total=length, desc="reference library", unit="batch")
    offset = 0
    try:
        with torch.no_grad(), preserved_model_state(forward_func):
            if isinstance(forward_func, Module):
                forward_func.eval()
            for batch_index, batch in enumerate(iterator):
                inputs, labels = _split_batch(batch, batch_index)
                size = int(inputs.shape[0])
                ours = batch_index in mine if mine is not None else batch_index % world == rank
                if ours:
                    inputs = inputs.to(device)
                    layer_tensors, outputs = capture_layer(
                        forward_func,
                        inputs,
                        layer,
                        additional_forward_args,
                        attribute_to_layer_input=attribute_to_layer_input,
                    )
                    if reshape_transform is not None and len(layer_tensors) == 1:
                        layer_tensors = (
                            reshaped(reshape_transform, layer_tensors[0], "the layer's output"),
                        )
                    activations = single_feature_map(layer_tensors)
                    outputs = check_output_tensor(outputs)
                    if outputs.dim() != 2:
                        raise ValueError(
                            "forward_func must return N x num_classes logits; got shape "
                            f"{tuple(outputs.shape)}"
                        )
                    if outputs.shape[1] != num_classes:
                        raise ValueError(
                            f"num_classes is {num_classes} but the model returns "
                            f"{outputs.shape[1]} outputs"
                        )
                    probabilities = torch.softmax(outputs.float(), dim=1)
                    low = probabilities < tau
                    if min_confidence is not None:
                        top, predicted = probabilities.max(dim=1)
                        good = (predicted.cpu() == labels.cpu()) & (
                            top.cpu() >= float(min_confidence)
                        )
                        low &= good.to(low.device)[:, None]
                    low = low.cpu()
                    for row in range(size):
                        classes = [
                            c
                            for c in low[row].nonzero().flatten().tolist()
                            if len(local_lists[c]) < max_per_class
                        ]
                        if not classes:
                            continue
                        position = offset + row
                        for c in classes:
                            local_lists[c].append(position)
                        stored[position] = (
                            activations[row].to(dtype=dtype, device="cpu").clone(),
                            classes,
                        )
                offset += size
                if all(len(lst) >= max_per_class for lst in local_lists):
                    break
    finally:
        if hasattr(iterator, "close"):
            iterator.close()

    merged = gather_by_index((position, (position, entry)) for position, entry in stored.items())
    return merged


def _length(dataloader: Iterable[Any]) -> Optional[int]:
    try:
        return len(dataloader)  # type: ignore[arg-type]
    except TypeError:
        return None


def _split_batch(batch: Any, batch_index: int) -> Tuple[Tensor, Tensor]:
    if isinstance(batch, (tuple, list)) and len(batch) >= 2:
        inputs, labels = batch[0], batch[1]
        if isinstance(inputs, Tensor) and isinstance(labels, Tensor):
            return inputs, labels
    raise ValueError(
        f"dataloader must yield (inputs, labels, ...) batches of tensors; batch {batch_index} "
        f"is a {type(batch).__name__}"
    )
