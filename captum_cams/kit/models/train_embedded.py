#!/usr/bin/env python3
r"""Trains the embedded default model (:class:`ShapesNet`) from scratch.

Usage::

    python -m captum_cams.kit.models.train_embedded [--epochs 15] [--out PATH]

The training images are the first ``--train-samples`` items of the ``"train"``
split of :class:`~captum_cams.kit.datasets.GroundTruthShapes` (``--data-seed``),
generated once and kept in memory; the reported accuracy is on the first
``--test-samples`` items of the ``"test"`` split, which is used for nothing else
(no model selection). Everything is seeded (``--seed``); on the CPU with the same
thread count a run is repeatable. The checkpoint is written atomically (temporary
file, then ``os.replace``) and loads with :func:`load_embedded_default`.
"""

import argparse
import shlex
import sys
import time
from typing import Dict, List, Optional, Tuple, Type, Union

import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm import tqdm

from captum_cams._utils.maps import minmax_normalize, upsample
from captum_cams.kit.datasets.cluttered import ClutteredShapes
from captum_cams.kit.datasets.ground_truth import GroundTruthShapes
from captum_cams.kit.models.embedded import (
    DEFAULT_BLOCKS,
    EMBEDDED_CLUTTERED_CHECKPOINT,
    EMBEDDED_DEFAULT_CHECKPOINT,
    ShapesNet,
    save_checkpoint,
)


def _parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m captum_cams.kit.models.train_embedded",
        description="Train the embedded default CNN on the GroundTruthShapes dataset.",
    )
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--train-samples", type=int, default=6000)
    parser.add_argument("--test-samples", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=3e-3, help="peak AdamW learning rate")
    parser.add_argument("--weight-decay", type=float, default=5e-4)
    parser.add_argument("--seed", type=int, default=0, help="seed of init and shuffling")
    parser.add_argument("--data-seed", type=int, default=0, help="GroundTruthShapes seed")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument(
        "--task",
        choices=sorted(TASKS),
        default="shapes",
        help="shapes: GroundTruthShapes (the tutorials' model); cluttered: ClutteredShapes "
        "(the main job's model)",
    )
    parser.add_argument(
        "--blocks",
        default=None,
        help="conv blocks as 'channels,stride' pairs separated by spaces; default: the "
        "task's (shapes: 32,2 32,1 64,2 64,1 64,1 64,1; cluttered: 16,2 32,2 48,1 64,1)",
    )
    parser.add_argument(
        "--cam-block",
        type=int,
        default=None,
        help="the CAM layer's block (shapes -1, cluttered -2)",
    )
    parser.add_argument(
        "--label-smoothing",
        type=float,
        default=None,
        help="cross-entropy label smoothing (default: shapes 0, cluttered 0.1)",
    )
    parser.add_argument(
        "--mask-augment",
        type=float,
        default=None,
        help="probability that a training image is multiplied by a random smooth soft mask "
        "(default: shapes 0, cluttered 0.5)",
    )
    parser.add_argument(
        "--out", default=None, help="checkpoint path (overwritten); default: the task's shipped one"
    )
    args = parser.parse_args(argv)
    for name in ("epochs", "train_samples", "test_samples", "batch_size", "threads"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.mask_augment is None:
        args.mask_augment = TASK_MASK_AUGMENT[args.task]
    if not 0.0 <= args.mask_augment <= 1.0:
        parser.error("--mask-augment must be in [0, 1]")
    if args.label_smoothing is None:
        args.label_smoothing = TASK_LABEL_SMOOTHING[args.task]
    if not 0.0 <= args.label_smoothing < 1.0:
        parser.error("--label-smoothing must be in [0, 1)")
    if args.out is None:
        args.out = TASKS[args.task][1]
    if args.blocks is None:
        args.blocks = TASK_BLOCKS[args.task]
    else:
        try:
            args.blocks = tuple(
                (int(pair.split(",")[0]), int(pair.split(",")[1])) for pair in args.blocks.split()
            )
        except (ValueError, IndexError):
            parser.error("--blocks must be 'channels,stride' pairs separated by spaces")
    if args.cam_block is None:
        args.cam_block = TASK_CAM_BLOCK[args.task]
    return args


def _stacked(dataset: Union[GroundTruthShapes, ClutteredShapes]) -> Tuple[Tensor, Tensor]:
    images = torch.empty(len(dataset), 3, dataset.image_size, dataset.image_size)
    labels = torch.empty(len(dataset), dtype=torch.long)
    for i in range(len(dataset)):
        item = dataset[i]  # (image, label): the training sets carry no annotations
        images[i], labels[i] = item[0], item[1]
    return images, labels


#: The default conv blocks of each task's model: the main job's is about 4x cheaper.
TASK_BLOCKS: Dict[str, Tuple[Tuple[int, int], ...]] = {
    "shapes": DEFAULT_BLOCKS,
    "cluttered": ((16, 2), (32, 2), (48, 1), (64, 1)),
}

#: The label smoothing of each task's training: the main job's model must not be
#: saturated (its target probability stays below about 0.91).
TASK_LABEL_SMOOTHING: Dict[str, float] = {"shapes": 0.0, "cluttered": 0.1}

#: How often a training image of each task is soft-masked (:func:`soft_mask_augment`).
TASK_MASK_AUGMENT: Dict[str, float] = {"shapes": 0.0, "cluttered": 0.5}


def soft_mask_augment(images: Tensor, probability: float, generator: torch.Generator) -> Tensor:
    r"""
    Multiplies each image, with ``probability``, by a random smooth soft mask: a 4 x 4
    to 8 x 8 grid of uniform values upsampled bilinearly and min-max normalised, the
    kind of ``M ⊙ x`` the confidence metrics feed the model. Trained on such inputs,
    the model meets masked images in distribution, so their scores reflect the
    evidence they keep rather than the shock of a dark image (the objection of
    Hooker et al., NeurIPS 2019, to scoring maps on masked inputs).

    Args:
        images (Tensor): ``N x C x H x W`` images.
        probability (float): the share of images masked.
        generator (torch.Generator): the random source (seeded: training repeats).

    Returns:
        *Tensor*: the images, some of them masked.

    Examples::

        >>> generator = torch.Generator().manual_seed(0)
        >>> masked = soft_mask_augment(images, probability=0.5, generator=generator)
    """
    num = images.shape[0]
    chosen = torch.rand(num, generator=generator) < probability
    grid = int(torch.randint(4, 9, (1,), generator=generator))
    coarse = torch.rand(num, 1, grid, grid, generator=generator)
    masks = minmax_normalize(upsample(coarse, tuple(images.shape[-2:])))
    return torch.where(chosen[:, None, None, None], images * masks, images)


#: The CAM block of each task's model: the main job's leaves a conv block in the head.
TASK_CAM_BLOCK: Dict[str, int] = {"shapes": -1, "cluttered": -2}

#: The tasks: the dataset class and the shipped checkpoint each trains.
TASKS: Dict[str, Tuple[Type[Union[GroundTruthShapes, ClutteredShapes]], str]] = {
    "shapes": (GroundTruthShapes, EMBEDDED_DEFAULT_CHECKPOINT),
    "cluttered": (ClutteredShapes, EMBEDDED_CLUTTERED_CHECKPOINT),
}


@torch.no_grad()
def accuracy(model: torch.nn.Module, images: Tensor, labels: Tensor, batch: int = 500) -> float:
    r"""
    Top-1 accuracy of ``model`` (put in eval mode) on ``images``, in ``[0, 1]``.

    Args:
        model (nn.Module): the classifier.
        images (Tensor): ``N x C x H x W`` inputs.
        labels (Tensor): ``(N,)`` true classes.
        batch (int, optional): images per forward pass. Default: 500.

    Returns:
        *float*: the share of ``images`` classified as ``labels``.

    Examples::

        >>> accuracy(load_embedded_default(), images, labels)
    """
    model.eval()
    correct = 0
    for start in range(0, images.shape[0], batch):
        logits = model(images[start : start + batch])
        correct += int((logits.argmax(1) == labels[start : start + batch]).sum())
    return correct / images.shape[0]


def main(argv: Optional[List[str]] = None) -> float:
    r"""
    Runs the training and writes the checkpoint.

    Args:
        argv (list[str], optional): command-line arguments; ``sys.argv[1:]`` when
                    None. Default: None.

    Returns:
        *float*: the test accuracy of the saved model.

    Examples::

        >>> main(["--task", "cluttered", "--epochs", "1", "--out", "net.pt"])
    """
    args = _parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    started = time.perf_counter()

    print(f"generating {args.train_samples} train and {args.test_samples} test images ...")
    dataset_class = TASKS[args.task][0]
    train_images, train_labels = _stacked(
        dataset_class(args.train_samples, split="train", seed=args.data_seed)
    )
    test_images, test_labels = _stacked(
        dataset_class(args.test_samples, split="test", seed=args.data_seed)
    )
    num_classes = len(dataset_class.classes)

    model = ShapesNet(num_classes=num_classes, blocks=args.blocks, cam_block=args.cam_block)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    steps_per_epoch = -(-args.train_samples // args.batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=args.lr, total_steps=args.epochs * steps_per_epoch
    )
    shuffler = torch.Generator().manual_seed(args.seed)
    augmenter = torch.Generator().manual_seed(args.seed + 1)

    progress = tqdm(total=args.epochs * steps_per_epoch, desc="training", unit="batch")
    for epoch in range(args.epochs):
        model.train()
        order = torch.randperm(args.train_samples, generator=shuffler)
        for start in range(0, args.train_samples, args.batch_size):
            idx = order[start : start + args.batch_size]
            batch = train_images[idx]
            if args.mask_augment > 0:
                batch = soft_mask_augment(batch, args.mask_augment, augmenter)
            loss = F.cross_entropy(
                model(batch), train_labels[idx], label_smoothing=args.label_smoothing
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            progress.update(1)
            progress.set_postfix(epoch=epoch + 1, loss=f"{loss.item():.3f}")
    progress.close()

    test_accuracy = accuracy(model, test_images, test_labels)
    seconds = time.perf_counter() - started
    command = "python -m captum_cams.kit.models.train_embedded " + " ".join(
        shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv)
    )
    meta = {
        "arch": "ShapesNet",
        "task": args.task,
        "label_smoothing": args.label_smoothing,
        "mask_augment": args.mask_augment,
        "blocks": [list(b) for b in args.blocks],
        "cam_block": args.cam_block,
        "num_classes": num_classes,
        "image_size": 64,
        "data_seed": args.data_seed,
        "train_samples": args.train_samples,
        "test_samples": args.test_samples,
        "epochs": args.epochs,
        "seed": args.seed,
        "test_accuracy": test_accuracy,
        "train_seconds": round(seconds, 1),
        "command": command.strip(),
        "torch_version": str(torch.__version__),
    }
    save_checkpoint(model, args.out, meta)
    print(
        f"test accuracy {test_accuracy:.4f} on {args.test_samples} images; "
        f"{seconds:.1f} s; saved {args.out}"
    )
    return test_accuracy


if __name__ == "__main__":
    main()
