#!/usr/bin/env python3
r"""Training a CALM model with the SGD defaults of the authors' code.

SGD with momentum 0.9, Nesterov, weight decay 1e-4; the two new branches (g and h)
learn ``head_lr_multiplier`` (10) times faster than the backbone. Checkpoints are
written atomically after every epoch (temporary file, then ``os.replace``), hold
only tensors and plain values (they load with ``torch.load(..., weights_only=True)``)
and make a run resumable: a resumed run gives the same parameters as one that was
never interrupted, because each epoch's shuffling is seeded by ``(seed, epoch)``.
"""

import math
import os
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from captum_cams._utils.files import atomic_path, dataset_fingerprint, load_weights_only
from captum_cams.calm.head import CALM, CALMOutput
from captum_cams.calm.losses import calm_em_loss, calm_ml_loss

#: The objectives :func:`train_calm` knows.
LOSSES: Dict[str, Callable[[CALMOutput, Tensor], Tensor]] = {
    "em": calm_em_loss,
    "ml": calm_ml_loss,
}

PathLike = Union[str, "os.PathLike[str]"]


def make_optimizer(
    model: CALM,
    lr: float = 0.01,
    momentum: float = 0.9,
    weight_decay: float = 1e-4,
    nesterov: bool = True,
    head_lr_multiplier: float = 10.0,
    fast_modules: Sequence[nn.Module] = (),
) -> torch.optim.SGD:
    r"""
    SGD with two parameter groups: the backbone at ``lr``, branches g and h (and the
    backbone modules in ``fast_modules``) at ``lr * head_lr_multiplier``.

    Args:
        model (CALM): the model.
        lr (float, optional): backbone learning rate. Default: 0.01.
        momentum (float, optional): Default: 0.9.
        weight_decay (float, optional): Default: 1e-4.
        nesterov (bool, optional): Default: True.
        head_lr_multiplier (float, optional): Default: 10.
        fast_modules (sequence of nn.Module, optional): submodules of the model
                    trained at the heads' rate too; the authors' configuration puts
                    the backbone's last stage there (e.g. ``[model.backbone[-1]]``).
                    Default: none (only the heads).

    Returns:
        *torch.optim.SGD*: the optimiser.

    Examples::

        >>> optimizer = make_optimizer(calm_model, lr=0.01, fast_modules=[calm_model.backbone[-1]])
    """
    if not isinstance(model, CALM):
        raise TypeError(f"model must be a CALM model; got {type(model).__name__}")
    for name, value in (("lr", lr), ("head_lr_multiplier", head_lr_multiplier)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise ValueError(f"{name} must be a positive number; got {value!r}")
    head = list(model.classifier.parameters()) + list(model.attention.parameters())
    own = {id(p) for p in model.parameters()}
    for module in fast_modules:
        extra = [p for p in module.parameters() if id(p) not in {id(q) for q in head}]
        if not all(id(p) in own for p in extra):
            raise ValueError("fast_modules must be submodules of the model")
        head += extra
    head_ids = {id(p) for p in head}
    backbone = [p for p in model.parameters() if id(p) not in head_ids]
    groups = [
        {"params": backbone, "lr": float(lr)},
        {"params": head, "lr": float(lr) * float(head_lr_multiplier)},
    ]
    return torch.optim.SGD(
        groups, lr=float(lr), momentum=momentum, weight_decay=weight_decay, nesterov=nesterov
    )


def save_training_checkpoint(path: PathLike, payload: Dict[str, Any]) -> None:
    r"""
    Writes ``payload`` with ``torch.save`` to a temporary file, then ``os.replace``.

    Args:
        path (str or PathLike): the checkpoint file.
        payload (dict): what to save (``model``, ``epoch`` and the optimiser's state).

    Examples::

        >>> save_training_checkpoint("calm.pt", {"model": calm_model.state_dict(), "epoch": 3})
    """
    with atomic_path(path) as temporary:
        torch.save(payload, temporary)


def load_training_checkpoint(path: PathLike) -> Dict[str, Any]:
    r"""
    Reads a checkpoint of :func:`train_calm` with ``weights_only=True`` on the CPU.

    Args:
        path (str or PathLike): the checkpoint file.

    Returns:
        *dict*: the payload, with at least ``model`` and ``epoch``.

    Examples::

        >>> payload = load_training_checkpoint("calm.pt")
        >>> calm_model.load_state_dict(payload["model"])
    """
    payload = load_weights_only(path, "CALM checkpoint")
    if not isinstance(payload, dict) or "model" not in payload or "epoch" not in payload:
        raise ValueError(f"{os.fspath(path)!r} is not a checkpoint written by train_calm")
    return payload


def _check_resume_settings(
    checkpoint: PathLike, state: Dict[str, Any], settings: Dict[str, Any]
) -> None:
    r"""Refuses to resume a checkpoint written with other settings, naming them."""
    name = os.fspath(checkpoint)
    if state.get("loss") != settings["loss"]:
        raise ValueError(
            f"checkpoint {name!r} was trained with loss {state.get('loss')!r}, not "
            f"{settings['loss']!r}"
        )
    saved = state.get("settings")
    if not isinstance(saved, dict):
        raise ValueError(
            f"checkpoint {name!r} does not record its training settings (written by an "
            "older version), so resuming it cannot be checked: pass resume=False or "
            "another checkpoint path to start afresh"
        )
    differs = [key for key in settings if saved.get(key) != settings[key]]
    if differs:
        described = ", ".join(
            "the dataset (its length or sampled items)"
            if key == "dataset"
            else f"{key}={saved.get(key)!r} (now {settings[key]!r})"
            for key in differs
        )
        raise ValueError(
            f"checkpoint {name!r} was written with other settings: {described}; resume "
            "with the same settings (only epochs may grow), or pass resume=False or "
            "another checkpoint path to start afresh"
        )


def train_calm(
    model: CALM,
    dataset: Dataset,
    loss: str = "em",
    epochs: int = 10,
    batch_size: int = 64,
    lr: float = 0.01,
    momentum: float = 0.9,
    weight_decay: float = 1e-4,
    nesterov: bool = True,
    head_lr_multiplier: float = 10.0,
    lr_decay_epochs: Optional[int] = None,
    lr_decay: float = 0.1,
    checkpoint: Optional[PathLike] = None,
    resume: bool = True,
    seed: int = 0,
    progress: bool = True,
    device: Union[None, str, torch.device] = None,
    num_workers: int = 0,
    fast_modules: Sequence[nn.Module] = (),
) -> List[Dict[str, float]]:
    r"""
    Trains a CALM model with CALM_EM (``loss="em"``) or CALM_ML (``loss="ml"``).

    The model is trained in place, in train mode, and left in eval mode. After each
    epoch a checkpoint (model, optimiser and scheduler state, epoch, history) is
    written atomically to ``checkpoint``; with ``resume=True`` a run starts from the
    checkpoint there and skips the epochs it holds.

    Args:
        model (CALM): the model to train.
        dataset (Dataset): items ``(image, label, ...)``; extra fields are ignored.
        loss (str, optional): ``"em"`` or ``"ml"``. Default: ``"em"``.
        epochs (int, optional): total epochs. Default: 10.
        batch_size (int, optional): Default: 64.
        lr (float, optional): backbone learning rate (the head's is ×
                    ``head_lr_multiplier``). Default: 0.01.
        momentum (float, optional): Default: 0.9.
        weight_decay (float, optional): Default: 1e-4.
        nesterov (bool, optional): Default: True.
        head_lr_multiplier (float, optional): Default: 10.
        lr_decay_epochs (int, optional): multiply the learning rates by ``lr_decay``
                    every this many epochs (the authors' step schedule); None keeps
                    them constant. Default: None.
        lr_decay (float, optional): Default: 0.1.
        checkpoint (str or PathLike, optional): checkpoint path. Default: None.
        resume (bool, optional): continue from ``checkpoint`` when it exists. The
                    checkpoint records every setting but ``epochs``, ``progress``,
                    ``device`` and ``num_workers``, and a fingerprint of the dataset
                    (its length and 8 sampled items); resuming with any of them
                    changed is refused with an error naming it (``epochs`` may grow:
                    that continues the run). Default: True.
        seed (int, optional): seeds the shuffling of epoch ``e`` as ``seed + e``
                    (the global RNG is not touched). Default: 0.
        progress (bool, optional): show tqdm progress bars. Default: True.
        device (str or torch.device, optional): Default: the model's device.
        num_workers (int, optional): DataLoader workers. Default: 0.
        fast_modules (sequence of nn.Module, optional): backbone modules trained
                    at the heads' rate (:func:`make_optimizer`; the authors'
                    configuration: the last stage). Default: none.

    Returns:
        *list[dict]*: one entry per epoch: ``epoch``, ``loss`` (mean training loss),
        ``accuracy`` (training accuracy of ``argmax p(y|x)`` during the epoch),
        ``lr`` (backbone learning rate used).

    Examples::

        >>> model = CALM.from_cifar_resnet(resnet20)
        >>> history = train_calm(model, train_set, loss="em", epochs=2, checkpoint="calm.pt")
    """
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {sorted(LOSSES)}; got {loss!r}")
    for name, value in (("epochs", epochs), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int; got {value!r}")
    if lr_decay_epochs is not None and (
        isinstance(lr_decay_epochs, bool) or not isinstance(lr_decay_epochs, int)
    ):
        raise ValueError(f"lr_decay_epochs must be a positive int or None; got {lr_decay_epochs!r}")
    if lr_decay_epochs is not None and lr_decay_epochs < 1:
        raise ValueError(f"lr_decay_epochs must be a positive int or None; got {lr_decay_epochs!r}")
    if len(dataset) == 0:  # type: ignore[arg-type]
        raise ValueError("dataset is empty")
    loss_fn = LOSSES[loss]
    if device is not None:
        model.to(device)
    param = next(model.parameters())
    device = param.device
    optimizer = make_optimizer(
        model, lr, momentum, weight_decay, nesterov, head_lr_multiplier, fast_modules
    )
    step = lr_decay_epochs if lr_decay_epochs is not None else 1
    gamma = lr_decay if lr_decay_epochs is not None else 1.0
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=step, gamma=gamma)
    history: List[Dict[str, float]] = []
    start = 0
    settings = {
        "loss": loss,
        "batch_size": batch_size,
        "lr": float(lr),
        "momentum": float(momentum),
        "weight_decay": float(weight_decay),
        "nesterov": bool(nesterov),
        "head_lr_multiplier": float(head_lr_multiplier),
        "lr_decay_epochs": lr_decay_epochs,
        "lr_decay": float(lr_decay),
        "seed": seed,
        "dataset": dataset_fingerprint(dataset, len(dataset)),  # type: ignore[arg-type]
    }
    if checkpoint is not None and resume and os.path.exists(os.fspath(checkpoint)):
        state = load_training_checkpoint(checkpoint)
        _check_resume_settings(checkpoint, state, settings)
        try:
            model.load_state_dict(state["model"])
        except RuntimeError as error:
            first = (str(error).strip().splitlines() or [""])[-1].strip()[:200]
            raise ValueError(
                f"checkpoint {os.fspath(checkpoint)!r} holds another model's weights ({first})"
            ) from None
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start = int(state["epoch"])
        history = [dict(h) for h in state["history"]]
    for epoch in range(start, epochs):
        generator = torch.Generator().manual_seed(seed + epoch)
        loader = DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=True,
            generator=generator,
            num_workers=num_workers,
        )
        model.train()
        total, correct, seen = 0.0, 0, 0
        used_lr = optimizer.param_groups[0]["lr"]
        from tqdm import tqdm  # imported where a bar is made, not with the package

        bar = tqdm(
            loader, desc=f"CALM_{loss.upper()} epoch {epoch + 1}/{epochs}", disable=not progress
        )
        for batch in bar:
            images, labels = batch[0].to(device, param.dtype), batch[1].to(device)
            output = model.components(images)
            batch_loss = loss_fn(output, labels)
            batch_value = float(batch_loss.detach())
            if not math.isfinite(batch_value):
                raise FloatingPointError(f"the {loss} loss is not finite in epoch {epoch + 1}")
            optimizer.zero_grad(set_to_none=True)
            batch_loss.backward()
            optimizer.step()
            total += batch_value * labels.shape[0]
            correct += int((output.log_probs.argmax(1) == labels).sum())
            seen += labels.shape[0]
            bar.set_postfix(loss=f"{total / seen:.4f}", acc=f"{correct / seen:.3f}")
        scheduler.step()
        history.append(
            {
                "epoch": float(epoch + 1),
                "loss": total / seen,
                "accuracy": correct / seen,
                "lr": used_lr,
            }
        )
        if checkpoint is not None:
            save_training_checkpoint(
                checkpoint,
                {
                    "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "epoch": epoch + 1,
                    "loss": loss,
                    "settings": settings,
                    "history": history,
                },
            )
    model.eval()
    return history
