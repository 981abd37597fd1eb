#!/usr/bin/env python3
r"""Libra-CAM's reference library: per class, activations of inputs the model finds
very unlikely to belong to that class.

For each class ``ℓ`` the library holds up to ``R`` (``max_per_class``) layer
activations ``A(x_r)`` of inputs with ``softmax_ℓ(f(x_r)) < τ``, the first ``R`` such
inputs in the data loader's order. One input is usually unlikely for many classes at
once, so activations are stored **once** (optionally as float16) and every class holds
a list of indices into that storage: a library of ``C`` classes and ``R`` references
costs ``unique entries × K·h·w`` values, not ``C·R`` copies.

Building works in one process and under ``torchrun``: the loader's batches are
sharded with :func:`~captum_cams._utils.distributed.shard_indices` and the candidates
merged with :func:`~captum_cams._utils.distributed.gather_by_index` by their global
position, so two processes build exactly the library one process builds. This module
holds the container and its file format; the scan of a loader is
``attr/_reference_scan.py``'s ``scan_references``.

Files are written with ``torch.save`` (to a temporary file, then renamed) and read
with ``torch.load(weights_only=True)``: loading cannot run code.
"""

import math
import os
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor
from torch.nn import Module

from captum_cams._utils.files import atomic_path, load_weights_only
from captum_cams._utils.guards import (
    check_layer_in_model,
    check_positive_int,
)
from captum_cams.attr._reference_scan import scan_references
from captum_cams.attr._reshape import check_reshape_transform

PathLike = Union[str, "os.PathLike[str]"]

#: The ``format`` tag of a saved library and its version.
LIBRARY_FORMAT = "captum_cams.ReferenceLibrary"
LIBRARY_VERSION = 1

#: Bytes of one entry of a class's index list (``torch.long``).
INDEX_BYTES = 8


class ReferenceLibrary:
    r"""
    Reference activations per class for :class:`~captum_cams.LayerLibraCam`.

    Build one with :meth:`build` (from a model, a layer and a data loader), store it
    with :meth:`save` and read it back with :meth:`load`.

    Args:
        activations (Tensor): ``E x K x h x w`` the unique stored activations
                    (float32, float16 or float64).
        class_indices (sequence of Tensor): one ``torch.long`` tensor per class,
                    indices into ``activations`` (possibly empty).
        tau (float): the probability bound the references satisfy.
        max_per_class (int): ``R``, the most references of one class.
        source_indices (Tensor, optional): ``(E,)`` the position of each entry's
                    input in the data loader's order. Default: ``-1`` each.
        min_confidence (float, optional): the confidence filter used at build
                    time, if any. Default: None

    Examples::

        >>> library = ReferenceLibrary.build(model, model.layer3, train_loader, 10)
        >>> library.save("resnet20_layer3.pt")
        >>> library = ReferenceLibrary.load("resnet20_layer3.pt")
        >>> library.references(3).shape     # R x K x h x w, the references of class 3
    """

    def __init__(
        self,
        activations: Tensor,
        class_indices: Sequence[Tensor],
        tau: float,
        max_per_class: int,
        source_indices: Optional[Tensor] = None,
        min_confidence: Optional[float] = None,
    ) -> None:
        if not isinstance(activations, Tensor) or activations.dim() != 4:
            raise ValueError("activations must be an E x K x h x w tensor")
        if activations.dtype not in (torch.float16, torch.float32, torch.float64):
            raise TypeError(f"activations must be float16/32/64; got {activations.dtype}")
        if len(class_indices) < 1:
            raise ValueError("class_indices must hold one index tensor per class (at least 1)")
        num_entries = activations.shape[0]
        indices = []
        for label, index in enumerate(class_indices):
            if not isinstance(index, Tensor) or index.dim() != 1 or index.is_floating_point():
                raise ValueError(f"class_indices[{label}] must be a 1-D integer tensor")
            index = index.to(torch.long).cpu()
            if index.numel() and (int(index.min()) < 0 or int(index.max()) >= num_entries):
                raise ValueError(f"class_indices[{label}] points outside the {num_entries} entries")
            if index.numel() > max_per_class:
                raise ValueError(
                    f"class_indices[{label}] holds {index.numel()} references; "
                    f"max_per_class is {max_per_class}"
                )
            indices.append(index)
        if source_indices is None:
            source_indices = torch.full((num_entries,), -1, dtype=torch.long)
        if source_indices.shape != (num_entries,):
            raise ValueError("source_indices must hold one position per entry")
        self.activations = activations.detach().cpu()
        self.class_indices: List[Tensor] = indices
        self.tau = float(tau)
        self.max_per_class = int(max_per_class)
        self.source_indices = source_indices.to(torch.long).cpu()
        self.min_confidence = None if min_confidence is None else float(min_confidence)

    # ------------------------------------------------------------------ properties
    @property
    def num_classes(self) -> int:
        r"""The number of classes (outputs of the model)."""
        return len(self.class_indices)

    @property
    def num_entries(self) -> int:
        r"""The number of unique stored activations."""
        return int(self.activations.shape[0])

    @property
    def activation_shape(self) -> Tuple[int, int, int]:
        r"""``(K, h, w)`` of the layer the library was built for."""
        k, h, w = self.activations.shape[1:]
        return int(k), int(h), int(w)

    @property
    def dtype(self) -> torch.dtype:
        r"""The storage dtype."""
        return self.activations.dtype

    def counts(self) -> List[int]:
        r"""
        The number of references of every class.

        Returns:
            *list[int]* of **counts**:
            - **counts** (*list[int]*):
                        ``R_ℓ`` for every class ``ℓ``, at most ``max_per_class``.

        Examples::

            >>> library.counts()
            [0, 3, 3, 3]
        """
        return [int(index.numel()) for index in self.class_indices]

    @property
    def entry_nbytes(self) -> int:
        r"""Bytes of one stored activation: ``K·h·w`` times the element size."""
        k, h, w = self.activation_shape
        return k * h * w * self.activations.element_size()

    @property
    def nbytes(self) -> int:
        r"""Bytes held in memory: the activations, the index lists and source indices."""
        index_entries = sum(self.counts())
        return (
            self.num_entries * self.entry_nbytes
            + index_entries * INDEX_BYTES
            + self.num_entries * INDEX_BYTES
        )

    @staticmethod
    def estimate_nbytes(
        num_classes: int,
        max_per_class: int,
        activation_shape: Sequence[int],
        dtype: torch.dtype = torch.float16,
        num_entries: Optional[int] = None,
    ) -> int:
        r"""
        Bytes a library would hold, with the same per-entry cost as :attr:`nbytes`.

        Args:
            num_classes (int): ``C``.
            max_per_class (int): ``R``.
            activation_shape (sequence of int): ``(K, h, w)``.
            dtype (torch.dtype, optional): storage dtype. Default: float16
            num_entries (int, optional): unique stored activations. Default: None
                        (``C·R``, no input shared between classes: the upper bound)

        Returns:
            *int* of **nbytes**:
            - **nbytes** (*int*):
                        the bytes of the activations, the index lists and the
                        source indices.

        Examples::

            >>> ReferenceLibrary.estimate_nbytes(10, 30, (64, 8, 8)) / 2**20
            2.348...
        """
        entries = num_classes * max_per_class if num_entries is None else num_entries
        element = torch.empty((), dtype=dtype).element_size()
        per_entry = math.prod(int(s) for s in activation_shape) * element
        return entries * per_entry + num_classes * max_per_class * INDEX_BYTES + entries * 8

    def __repr__(self) -> str:
        counts = self.counts()
        return (
            f"ReferenceLibrary(classes={self.num_classes}, entries={self.num_entries}, "
            f"shape={self.activation_shape}, dtype={self.dtype}, tau={self.tau}, "
            f"R={self.max_per_class}, references per class {min(counts)}..{max(counts)}, "
            f"{self.nbytes / 2**20:.2f} MiB)"
        )

    # ------------------------------------------------------------------ access
    def references(
        self,
        label: int,
        dtype: Optional[torch.dtype] = None,
        device: Optional[Union[str, torch.device]] = None,
    ) -> Tensor:
        r"""
        The reference activations of class ``label``.

        Args:
            label (int): the class.
            dtype (torch.dtype, optional): the dtype to return. Default: storage's
            device (str or torch.device, optional): where to return them.
                        Default: CPU

        Returns:
            *Tensor* of **references**:
            - **references** (*Tensor*):
                        ``R_label x K x h x w`` the stored activations of the
                        class (``R_label`` may be 0).

        Examples::

            >>> library.references(3, dtype=torch.float32, device="cuda").shape
            torch.Size([30, 64, 8, 8])
        """
        if not 0 <= int(label) < self.num_classes:
            raise ValueError(f"label must be in [0, {self.num_classes}); got {label}")
        out = self.activations[self.class_indices[int(label)]]
        return out.to(dtype=dtype or out.dtype, device=device)

    def check_compatible(self, activation_shape: Sequence[int], num_classes: int) -> None:
        r"""
        Raises a ``ValueError`` unless the library fits a layer output of shape
        ``(K, h, w)`` and a model with ``num_classes`` outputs.

        Args:
            activation_shape (sequence of int): the layer's ``(K, h, w)``.
            num_classes (int): the model's number of outputs.

        Raises:
            ValueError: the library was built for another layer shape or another
            number of classes; the message gives both.

        Examples::

            >>> library.check_compatible((64, 8, 8), 10)    # built for layer3, 10 classes
            >>> library.check_compatible((32, 16, 16), 10)  # ValueError: another layer
        """
        if tuple(int(s) for s in activation_shape) != self.activation_shape:
            raise ValueError(
                "library was built for another layer: its activations have shape "
                f"{self.activation_shape} (K, h, w), the layer produces "
                f"{tuple(activation_shape)}"
            )
        if int(num_classes) != self.num_classes:
            raise ValueError(
                f"library was built for {self.num_classes} classes; the model has {num_classes}"
            )

    # ------------------------------------------------------------------ files
    def state_dict(self) -> Dict[str, Any]:
        r"""
        The library as a dict of tensors and plain values (what :meth:`save` writes).

        Returns:
            *dict[str, Any]* of **state**:
            - **state** (*dict[str, Any]*):
                        ``format``, ``version``, ``activations``, ``class_counts``,
                        ``class_entries`` (the class index lists concatenated),
                        ``source_indices``, ``tau``, ``max_per_class`` and
                        ``min_confidence``.

        Examples::

            >>> state = library.state_dict()
            >>> state["class_counts"].sum() == state["class_entries"].numel()
            tensor(True)
        """
        counts = torch.tensor(self.counts(), dtype=torch.long)
        flat = torch.cat(self.class_indices) if self.num_classes else torch.empty(0)
        return {
            "format": LIBRARY_FORMAT,
            "version": LIBRARY_VERSION,
            "activations": self.activations,
            "class_counts": counts,
            "class_entries": flat.to(torch.long),
            "source_indices": self.source_indices,
            "tau": self.tau,
            "max_per_class": self.max_per_class,
            "min_confidence": self.min_confidence,
        }

    def save(self, path: PathLike) -> None:
        r"""
        Writes the library to ``path`` (a temporary file in the same folder, then
        renamed, so an interrupted save never leaves a partial file).

        Args:
            path (str or PathLike): the file to write.

        Raises:
            FileNotFoundError: the file's folder does not exist (it is not created).
            NotADirectoryError: a file stands where the folder should be.

        Examples::

            >>> library.save("resnet20_layer3.pt")
        """
        with atomic_path(path, make_parents=False) as temporary:
            torch.save(self.state_dict(), temporary)

    @classmethod
    def load(cls, path: PathLike) -> "ReferenceLibrary":
        r"""
        Reads a library written by :meth:`save` with ``torch.load(weights_only=True)``:
        a file that holds anything but tensors and plain values is refused, and
        nothing in it is executed.

        Args:
            path (str or PathLike): the file.

        Returns:
            *ReferenceLibrary* of **library**:
            - **library** (*ReferenceLibrary*):
                        the library, on the CPU.

        Raises:
            FileNotFoundError: no such file.
            ValueError: the file is empty, truncated, not a torch file, not a
            library, or holds objects that cannot be loaded safely; the message
            names the file.

        Examples::

            >>> library = ReferenceLibrary.load("resnet20_layer3.pt")
            >>> LayerLibraCam(model, model.layer3, library=library)
        """
        state = load_weights_only(path, "reference library")
        if not isinstance(state, dict) or state.get("format") != LIBRARY_FORMAT:
            raise ValueError(f"{path} is not a captum_cams reference library")
        if state.get("version") != LIBRARY_VERSION:
            raise ValueError(f"{path}: unsupported library version {state.get('version')!r}")
        try:
            counts = state["class_counts"]
            entries = state["class_entries"]
            if int(counts.sum()) != entries.numel():
                raise ValueError("class_counts do not add up to class_entries")
            class_indices = list(torch.split(entries, counts.tolist()))
            return cls(
                state["activations"],
                class_indices,
                tau=state["tau"],
                max_per_class=state["max_per_class"],
                source_indices=state["source_indices"],
                min_confidence=state["min_confidence"],
            )
        except (KeyError, TypeError, AttributeError, RuntimeError, ValueError) as error:
            raise ValueError(f"{path} is a damaged reference library: {error}") from error

    # ------------------------------------------------------------------ building
    @classmethod
    def build(
        cls,
        forward_func: Callable,
        layer: Module,
        dataloader: Iterable[Any],
        num_classes: int,
        tau: float = 1e-4,
        max_per_class: int = 30,
        min_confidence: Optional[float] = None,
        dtype: torch.dtype = torch.float32,
        device: Optional[Union[str, torch.device]] = None,
        additional_forward_args: Any = None,
        attribute_to_layer_input: bool = False,
        progress: bool = True,
        reshape_transform: Optional[Callable[[Tensor], Tensor]] = None,
    ) -> "ReferenceLibrary":
        r"""
        Builds a library from ``(input, label)`` batches.

        For every class ``ℓ``, the references are the first ``max_per_class``
        inputs of the loader (in its order; use a loader without shuffling for a
        reproducible library) with ``softmax_ℓ(model(x)) < tau``; with
        ``min_confidence``, only inputs that the model classifies correctly with a
        top probability ``≥ min_confidence`` qualify (the authors' older code used
        0.8). Each qualifying input's activation is stored once, whatever the
        number of classes it serves. The loop stops early once every class is full.

        Under ``torchrun`` (an initialised process group), every process handles
        its share of the batches and all of them return the same library, equal to
        the one a single process builds.

        Args:
            forward_func (Callable): the classifier, returning ``N x num_classes``
                        logits: a module (run in eval mode, its state restored
                        afterwards) or any function, as Captum's methods take it
                        (a model whose output is not a tensor goes in
                        :class:`~captum_cams.OutputAdapter`).
            layer (Module): the layer of :class:`~captum_cams.LayerLibraCam`; its
                        output must be ``N x K x h x w``.
            dataloader (Iterable): batches ``(inputs, labels, ...)``, e.g. a
                        :class:`torch.utils.data.DataLoader` of a labelled dataset.
            num_classes (int): the model's number of outputs.
            tau (float, optional): the probability bound ``τ`` in ``(0, 1)``.
                        Default: 1e-4
            max_per_class (int, optional): ``R``. Default: 30
            min_confidence (float, optional): confidence filter on the references
                        themselves, in ``(0, 1]``. Default: None (no filter)
            dtype (torch.dtype, optional): storage dtype, ``torch.float16`` halves
                        the memory. Default: ``torch.float32``
            device (str or torch.device, optional): where the model runs.
                        Default: the device of the first parameter of the model
                        (of the layer, for a function; CPU without parameters)
            additional_forward_args (Any, optional): further arguments of the
                        model, after the inputs, the same for every batch (as
                        Captum's ``additional_forward_args``: a tuple, or one value;
                        tensors are passed as given, so put them on the model's
                        device). They may be used before the layer or after it;
                        the stored activations and the probabilities are those of
                        ``model(inputs, *additional_forward_args)``. Default: None
            attribute_to_layer_input (bool, optional): store the layer's input
                        instead of its output. Default: False
            progress (bool, optional): show a progress bar (tqdm) on the main
                        process. Default: True
            reshape_transform (Callable, optional): turns the layer's output into
                        ``N x K x h x w`` before it is stored; the one
                        :class:`~captum_cams.LayerLibraCam` is given. Default: None

        Returns:
            *ReferenceLibrary* of **library**:
            - **library** (*ReferenceLibrary*):
                        the library, on the CPU; the same on every process under
                        ``torchrun``.

        Examples::

            >>> loader = DataLoader(cifar10_train_set(), batch_size=128)
            >>> library = ReferenceLibrary.build(model, model.layer3, loader, 10)
            >>> # a Hugging Face classifier, through the adapter that returns .logits
            >>> library = ReferenceLibrary.build(
            ...     OutputAdapter(hf), hf.resnet.encoder.stages[-1], loader, 1000
            ... )
            >>> # a model whose forward takes a fixed extra argument, model(x, scale)
            >>> library = ReferenceLibrary.build(
            ...     model, model.layer3, loader, 10, additional_forward_args=(2.0,)
            ... )
        """
        if not callable(forward_func):
            raise TypeError(f"forward_func must be callable; got {type(forward_func).__name__}")
        check_layer_in_model(forward_func, layer)
        check_reshape_transform(reshape_transform)
        check_positive_int(num_classes, "num_classes", allow_none=False)
        check_positive_int(max_per_class, "max_per_class", allow_none=False)
        if isinstance(tau, bool) or not isinstance(tau, (int, float)) or not 0 < tau < 1:
            raise ValueError(f"tau must be a number in (0, 1); got {tau!r}")
        if min_confidence is not None and not 0 < float(min_confidence) <= 1:
            raise ValueError(f"min_confidence must be in (0, 1]; got {min_confidence!r}")
        if dtype not in (torch.float16, torch.float32, torch.float64):
            raise TypeError(f"dtype must be torch.float16, float32 or float64; got {dtype}")
        merged = scan_references(
            forward_func, layer, dataloader, num_classes, tau, max_per_class, min_confidence,
            dtype, device, additional_forward_args, attribute_to_layer_input, progress,
            reshape_transform,
        )  # fmt: skip
        return cls._from_candidates(merged, num_classes, tau, max_per_class, min_confidence)

    @classmethod
    def _from_candidates(
        cls,
        candidates: List[Tuple[int, Tuple[Tensor, List[int]]]],
        num_classes: int,
        tau: float,
        max_per_class: int,
        min_confidence: Optional[float],
    ) -> "ReferenceLibrary":
        r"""
        The first ``max_per_class`` candidates of every class in global order; only
        entries some class uses are kept.
        """
        chosen: List[List[int]] = [[] for _ in range(num_classes)]
        for rank, (_, (_, classes)) in enumerate(candidates):
            for c in classes:
                if len(chosen[c]) < max_per_class:
                    chosen[c].append(rank)
        used = sorted({rank for lst in chosen for rank in lst})
        new_index = {rank: i for i, rank in enumerate(used)}
        if used:
            activations = torch.stack([candidates[rank][1][0] for rank in used])
        else:
            raise ValueError(
                "no input qualified as a reference for any class: raise tau, give more "
                "data or drop min_confidence"
            )
        class_indices = [
            torch.tensor([new_index[rank] for rank in lst], dtype=torch.long) for lst in chosen
        ]
        sources = torch.tensor([candidates[rank][0] for rank in used], dtype=torch.long)
        return cls(activations, class_indices, tau, max_per_class, sources, min_confidence)


__all__ = ["ReferenceLibrary"]
