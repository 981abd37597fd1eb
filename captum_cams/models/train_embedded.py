#!/usr/bin/env python3
r"""Trains the embedded default model (:class:`ShapesNet`) from scratch.

Usage::

    python -m captum_cams.models.train_embedded [--epochs 15] [--out PATH]

The training images are the first ``--train-samples`` items of the ``"train"``
split of :class:`~captum_cams.datasets.GroundTruthShapes` (``--data-seed``),
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
from typing import List, Optional

import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm import tqdm

from captum_cams.datasets.ground_truth import NUM_CLASSES, make_batch
from captum_cams.models.embedded import (
    DEFAULT_BLOCKS,
    EMBEDDED_DEFAULT_CHECKPOINT,
    ShapesNet,
    save_checkpoint,
)


def _parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m captum_cams.models.train_embedded",
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
        "--out", default=EMBEDDED_DEFAULT_CHECKPOINT, help="checkpoint path (overwritten)"
    )
    args = parser.parse_args(argv)
    for name in ("epochs", "train_samples", "test_samples", "batch_size", "threads"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    return args


@torch.no_grad()
def accuracy(model: torch.nn.Module, images: Tensor, labels: Tensor, batch: int = 500) -> float:
    r"""Top-1 accuracy of ``model`` (put in eval mode) on ``images``, in ``[0, 1]``."""
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
    """
    args = _parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    started = time.perf_counter()

    print(f"generating {args.train_samples} train and {args.test_samples} test images ...")
    train = make_batch(args.train_samples, split="train", seed=args.data_seed)
    test = make_batch(args.test_samples, split="test", seed=args.data_seed)

    model = ShapesNet(num_classes=NUM_CLASSES)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    steps_per_epoch = -(-args.train_samples // args.batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=args.lr, total_steps=args.epochs * steps_per_epoch
    )
    shuffler = torch.Generator().manual_seed(args.seed)

    progress = tqdm(total=args.epochs * steps_per_epoch, desc="training", unit="batch")
    for epoch in range(args.epochs):
        model.train()
        order = torch.randperm(args.train_samples, generator=shuffler)
        for start in range(0, args.train_samples, args.batch_size):
            idx = order[start : start + args.batch_size]
            loss = F.cross_entropy(model(train.images[idx]), train.labels[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            progress.update(1)
            progress.set_postfix(epoch=epoch + 1, loss=f"{loss.item():.3f}")
    progress.close()

    test_accuracy = accuracy(model, test.images, test.labels)
    seconds = time.perf_counter() - started
    command = "python -m captum_cams.models.train_embedded " + " ".join(
        shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv)
    )
    meta = {
        "arch": "ShapesNet",
        "blocks": [list(b) for b in DEFAULT_BLOCKS],
        "num_classes": NUM_CLASSES,
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
