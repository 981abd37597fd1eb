#!/usr/bin/env python3
"""The training command of the embedded shapes model: a tiny run writes a checkpoint the
loader reads back, bad arguments are refused, accuracy counts argmax hits, and the soft-mask
augmentation masks the chosen images with one min-max normalised mask each."""

import os

import pytest
import torch
import torch.nn as nn

from captum_cams.kit.models import load_embedded_default, train_embedded


def test_training_command_writes_a_loadable_checkpoint(tmp_path, capsys) -> None:
    out = tmp_path / "tiny.pt"
    accuracy = train_embedded.main(
        [
            "--epochs",
            "1",
            "--train-samples",
            "32",
            "--test-samples",
            "16",
            "--batch-size",
            "16",
            "--out",
            str(out),
        ]
    )
    assert 0.0 <= accuracy <= 1.0
    assert "test accuracy" in capsys.readouterr().out
    loaded = load_embedded_default(out)
    assert loaded.meta["epochs"] == 1 and loaded.meta["train_samples"] == 32
    assert os.listdir(tmp_path) == ["tiny.pt"]


def test_training_command_rejects_bad_arguments() -> None:
    with pytest.raises(SystemExit):
        train_embedded.main(["--epochs", "0"])


def test_accuracy_counts_argmax_hits_over_every_batch() -> None:
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, 1.0], [0.0, 5.0], [1.0, 0.0]])
    model = nn.Sequential(nn.Identity())
    labels = torch.tensor([0, 1, 1, 1, 1])  # hits: rows 0, 1, 3
    assert train_embedded.accuracy(model, logits, labels, batch=2) == 3 / 5
    assert train_embedded.accuracy(model, logits, labels) == 3 / 5
    model.train()
    train_embedded.accuracy(model, logits, labels)
    assert not model.training  # measured in eval mode


def test_soft_mask_augment_masks_the_chosen_images_with_a_smooth_unit_mask() -> None:
    images = torch.full((6, 3, 16, 16), 2.0)
    untouched = train_embedded.soft_mask_augment(images, 0.0, torch.Generator().manual_seed(0))
    assert torch.equal(untouched, images)
    masked = train_embedded.soft_mask_augment(images, 1.0, torch.Generator().manual_seed(0))
    masks = masked / images
    assert torch.equal(masks[:, :1].expand_as(masks), masks)  # one mask for every channel
    for mask in masks[:, 0]:
        assert float(mask.min()) == 0.0 and float(mask.max()) == 1.0  # min-max normalised
    assert not torch.equal(masks[0], masks[1])  # a mask per image
    again = train_embedded.soft_mask_augment(images, 1.0, torch.Generator().manual_seed(0))
    assert torch.equal(again, masked)  # the seed repeats the training
    half = train_embedded.soft_mask_augment(
        torch.full((400, 1, 8, 8), 1.0), 0.5, torch.Generator().manual_seed(1)
    )
    share = float((half != 1.0).flatten(1).any(1).double().mean())
    assert 0.4 < share < 0.6
