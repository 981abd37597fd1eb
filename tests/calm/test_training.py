#!/usr/bin/env python3
"""train_calm: the paper code's SGD settings, learning on a separable toy set,
atomic weights-only checkpoints, and a resumed run equal to an uninterrupted one."""

import os

import pytest
import torch
import torch.nn as nn
from torch.utils.data import TensorDataset

from captum_cams.calm import CALM, load_training_checkpoint, make_optimizer, train_calm


def _model(seed: int = 0) -> CALM:
    torch.manual_seed(seed)
    backbone = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU())
    return CALM(backbone, in_channels=6, num_classes=3)


def _toy_set(n: int = 48) -> TensorDataset:
    # class c: a bright 2x2 square in channel c at a random place on a noisy image
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(n, 3, 8, 8, generator=generator) * 0.2
    labels = torch.arange(n) % 3
    for i in range(n):
        r, c = torch.randint(0, 7, (2,), generator=generator).tolist()
        images[i, labels[i], r : r + 2, c : c + 2] = 1.0
    return TensorDataset(images, labels)


def test_optimizer_groups_follow_the_paper_code():
    model = _model()
    optimizer = make_optimizer(model, lr=0.02)
    backbone, head = optimizer.param_groups
    assert backbone["lr"] == 0.02 and head["lr"] == pytest.approx(0.2)
    for group in (backbone, head):
        assert group["momentum"] == 0.9 and group["nesterov"] is True
        assert group["weight_decay"] == 1e-4
    head_params = set(
        map(id, list(model.classifier.parameters()) + list(model.attention.parameters()))
    )
    assert {id(p) for p in head["params"]} == head_params
    assert len(backbone["params"]) + len(head["params"]) == len(list(model.parameters()))
    with pytest.raises(ValueError, match="head_lr_multiplier"):
        make_optimizer(model, head_lr_multiplier=0)
    # the authors' configuration: the backbone's last stage at the heads' rate too
    last = model.backbone[0]  # the tiny backbone's one convolution
    fast = make_optimizer(model, lr=0.02, fast_modules=[last])
    slow_group, fast_group = fast.param_groups
    last_ids = {id(p) for p in last.parameters()}
    assert last_ids and {id(p) for p in fast_group["params"]} == head_params | last_ids
    assert not last_ids & {id(p) for p in slow_group["params"]}
    assert fast_group["lr"] == pytest.approx(0.2)
    with pytest.raises(ValueError, match="fast_modules"):
        make_optimizer(model, fast_modules=[nn.Linear(2, 2)])


@pytest.mark.parametrize("loss", ["em", "ml"])
def test_training_learns_the_toy_set(loss):
    model, data = _model(), _toy_set()
    images, labels = data.tensors
    with torch.no_grad():
        before = torch.nn.functional.nll_loss(model.eval()(images, log_probs=True), labels)
    history = train_calm(model, data, loss=loss, epochs=4, batch_size=8, lr=0.05, progress=False)
    assert [h["epoch"] for h in history] == [1.0, 2.0, 3.0, 4.0]
    assert not model.training
    with torch.no_grad():
        after = torch.nn.functional.nll_loss(model(images, log_probs=True), labels)
        accuracy = (model(images).argmax(1) == labels).double().mean()
    assert after < 0.2 * before and accuracy == 1.0


def test_resume_gives_the_uninterrupted_run(tmp_path):
    data = _toy_set(24)
    straight = _model()
    train_calm(straight, data, epochs=3, batch_size=8, lr_decay_epochs=2, progress=False)
    path = tmp_path / "calm.pt"
    first = _model()
    train_calm(
        first, data, epochs=2, batch_size=8, lr_decay_epochs=2, checkpoint=path, progress=False
    )
    assert not any(name.endswith(".tmp") for name in os.listdir(tmp_path))
    state = load_training_checkpoint(path)  # weights_only=True inside
    assert state["epoch"] == 2 and state["loss"] == "em" and len(state["history"]) == 2
    resumed = _model(seed=5)  # different initial weights: all of it must come from the file
    history = train_calm(
        resumed, data, epochs=3, batch_size=8, lr_decay_epochs=2, checkpoint=path, progress=False
    )
    assert len(history) == 3 and history[2]["lr"] == pytest.approx(0.001)
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name
    assert torch.load(path, weights_only=True)["epoch"] == 3
    with pytest.raises(ValueError, match="trained with loss 'em'"):
        train_calm(_model(), data, loss="ml", epochs=4, checkpoint=path, progress=False)


def test_errors():
    data = _toy_set(6)
    with pytest.raises(ValueError, match="loss"):
        train_calm(_model(), data, loss="kl")
    with pytest.raises(ValueError, match="epochs"):
        train_calm(_model(), data, epochs=0)
    with pytest.raises(ValueError, match="empty"):
        train_calm(_model(), TensorDataset(torch.zeros(0, 3, 8, 8), torch.zeros(0)))
    with pytest.raises(TypeError, match="CALM model"):
        make_optimizer(nn.Linear(2, 2))  # type: ignore[arg-type]


# --- resuming is refused when anything that shapes the run changed ---------------------------


def _first_run(path, **overrides):
    options = dict(epochs=1, batch_size=8, lr=0.01, progress=False, checkpoint=path)
    options.update(overrides)
    train_calm(_model(), _toy_set(12), **options)
    return path.read_bytes()


def _relabelled() -> TensorDataset:
    images, labels = _toy_set(12).tensors
    labels = labels.clone()
    labels[-1] = (labels[-1] + 1) % 3
    return TensorDataset(images, labels)


RESUME_CHANGES = {
    "lr": ({"lr": 0.02}, "lr=0.01 \\(now 0.02\\)"),
    "batch_size": ({"batch_size": 4}, "batch_size=8 \\(now 4\\)"),
    "momentum": ({"momentum": 0.5}, "momentum=0.9 \\(now 0.5\\)"),
    "weight_decay": ({"weight_decay": 0.0}, "weight_decay=0.0001 \\(now 0.0\\)"),
    "nesterov": ({"nesterov": False}, "nesterov=True \\(now False\\)"),
    "head_lr_multiplier": ({"head_lr_multiplier": 1.0}, "head_lr_multiplier=10.0"),
    "lr_decay_epochs": ({"lr_decay_epochs": 2}, "lr_decay_epochs=None \\(now 2\\)"),
    "lr_decay": ({"lr_decay": 0.5}, "lr_decay=0.1 \\(now 0.5\\)"),
    "seed": ({"seed": 1}, "seed=0 \\(now 1\\)"),
    "other dataset": ({"dataset": _toy_set(13)}, "the dataset"),
    "relabelled dataset": ({"dataset": _relabelled()}, "the dataset"),
    "two settings": ({"lr": 0.5, "seed": 3}, "lr=0.01 \\(now 0.5\\), seed=0 \\(now 3\\)"),
}


@pytest.mark.parametrize("change", list(RESUME_CHANGES))
def test_resuming_with_changed_settings_is_refused_by_name(tmp_path, change):
    path = tmp_path / "calm.pt"
    saved = _first_run(path)
    overrides, named = RESUME_CHANGES[change]
    options = dict(epochs=2, batch_size=8, lr=0.01, progress=False, checkpoint=path)
    options.update(overrides)
    dataset = options.pop("dataset", _toy_set(12))
    model = _model(seed=7)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(
        ValueError, match=rf"^checkpoint '.*calm.pt' was written with other settings: {named}"
    ):
        train_calm(model, dataset, **options)
    assert path.read_bytes() == saved and sorted(os.listdir(tmp_path)) == ["calm.pt"]
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_resuming_with_the_same_settings_and_more_epochs_continues(tmp_path):
    path = tmp_path / "calm.pt"
    _first_run(path)
    history = train_calm(
        _model(seed=7), _toy_set(12), epochs=2, batch_size=8, lr=0.01, progress=False,
        checkpoint=path, num_workers=0,
    )  # fmt: skip
    assert [h["epoch"] for h in history] == [1.0, 2.0]


@pytest.mark.parametrize(
    "kind", ["truncated", "tail cut", "third", "one byte", "empty", "text", "folder"]
)
def test_a_damaged_checkpoint_is_named_and_left_alone(tmp_path, damage, kind):
    path = tmp_path / "calm.pt"
    _first_run(path)
    if kind == "folder":
        path.unlink()
        path.mkdir()
    else:
        damage(path, kind)
    before = path.read_bytes() if path.is_file() else None
    error = IsADirectoryError if kind == "folder" else ValueError
    with pytest.raises(
        error, match=r"calm\.pt (is empty|is not a readable CALM checkpoint|is a folder)"
    ):
        train_calm(_model(), _toy_set(12), epochs=2, batch_size=8, checkpoint=path, progress=False)
    if before is not None:
        assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["calm.pt"]


def test_checkpoints_without_settings_or_of_another_model_are_refused(tmp_path):
    path = tmp_path / "calm.pt"
    _first_run(path)
    state = torch.load(path, weights_only=True)
    del state["settings"]
    torch.save(state, path)
    with pytest.raises(ValueError, match="does not record its training settings"):
        train_calm(_model(), _toy_set(12), epochs=2, batch_size=8, checkpoint=path, progress=False)
    path.unlink()
    _first_run(path)
    torch.manual_seed(0)
    wider = CALM(
        nn.Sequential(nn.Conv2d(3, 5, 3, padding=1), nn.ReLU()), in_channels=5, num_classes=3
    )
    with pytest.raises(ValueError, match="calm.pt' holds another model's weights"):
        train_calm(wider, _toy_set(12), epochs=2, batch_size=8, checkpoint=path, progress=False)
