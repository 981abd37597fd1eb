#!/usr/bin/env python3
import os

import pytest
import torch
import torch.fx
import torch.nn as nn

from captum_cams.kit.datasets import NUM_CLASSES, make_batch
from captum_cams.kit.models import (
    EMBEDDED_DEFAULT_CHECKPOINT,
    ShapesNet,
    embedded_default_layer,
    load_embedded_default,
)
from captum_cams.kit.models.embedded import save_checkpoint


@pytest.fixture(scope="module")
def model() -> ShapesNet:
    return load_embedded_default()


def test_checkpoint_is_a_small_plain_state_dict() -> None:
    assert os.path.isfile(EMBEDDED_DEFAULT_CHECKPOINT)
    assert os.path.getsize(EMBEDDED_DEFAULT_CHECKPOINT) < 4 * 2**20
    payload = torch.load(EMBEDDED_DEFAULT_CHECKPOINT, map_location="cpu", weights_only=True)
    assert set(payload) == {"state_dict", "meta"}
    assert all(isinstance(v, torch.Tensor) for v in payload["state_dict"].values())
    assert payload["meta"]["num_classes"] == NUM_CLASSES
    assert payload["meta"]["test_accuracy"] >= 0.95


def test_loaded_model_is_in_eval_mode_on_cpu(model: ShapesNet) -> None:
    assert isinstance(model, ShapesNet) and not model.training
    assert all(p.device.type == "cpu" for p in model.parameters())
    assert not any(m.training for m in model.modules())


def test_accuracy_on_held_out_test_images(model: ShapesNet) -> None:
    images, labels, _, _ = make_batch(500, split="test", seed=0)
    with torch.no_grad():
        accuracy = (model(images).argmax(1) == labels).float().mean().item()
    assert accuracy >= 0.95


def test_prediction_depends_on_the_object(model: ShapesNet) -> None:
    # With the object's box painted over in mid grey the classes are near chance:
    # the background and the distractors carry no class information.
    images, labels, _, boxes = make_batch(300, split="test", seed=1)
    rows = torch.arange(64).view(1, 64, 1)
    cols = torch.arange(64).view(1, 1, 64)
    x1, y1, x2, y2 = (boxes[:, i].view(-1, 1, 1) for i in range(4))
    in_box = ((cols >= x1) & (cols < x2) & (rows >= y1) & (rows < y2)).unsqueeze(1)
    with torch.no_grad():
        clean = (model(images).argmax(1) == labels).float().mean().item()
        erased = model(torch.where(in_box, torch.full_like(images, 0.5), images))
    erased_accuracy = (erased.argmax(1) == labels).float().mean().item()
    assert clean >= 0.95 and erased_accuracy < 0.3


def test_cam_layer_and_linear_head(model: ShapesNet) -> None:
    layer = embedded_default_layer(model)
    assert layer is model.features[-1]
    images = make_batch(4, split="val").images
    captured = {}
    handle = layer.register_forward_hook(lambda m, i, o: captured.update(out=o))
    try:
        with torch.no_grad():
            logits = model(images)
    finally:
        handle.remove()
    activations = captured["out"]
    assert activations.shape == (4, 64, 16, 16)
    assert (activations >= 0).all()  # the output of the block's ReLU
    # After the CAM layer the model is GAP + Linear.
    with torch.no_grad():
        head = model.fc(activations.mean(dim=(2, 3)))
    torch.testing.assert_close(head, logits, rtol=1e-5, atol=1e-5)
    with pytest.raises(TypeError, match="model"):
        embedded_default_layer(nn.Linear(2, 2))


def test_traces_with_fx_using_modules_only(model: ShapesNet) -> None:
    traced = torch.fx.symbolic_trace(model)
    ops = {node.op for node in traced.graph.nodes}
    assert ops == {"placeholder", "call_module", "output"}  # no functional calls
    images = make_batch(2, split="val").images
    with torch.no_grad():
        torch.testing.assert_close(traced(images), model(images))


def test_every_relu_is_its_own_out_of_place_module(model: ShapesNet) -> None:
    relus = [m for m in model.modules() if isinstance(m, nn.ReLU)]
    assert len(relus) == len(model.features)
    assert len({id(m) for m in relus}) == len(relus)
    assert not any(m.inplace for m in relus)
    traced = torch.fx.symbolic_trace(model)
    targets = [n.target for n in traced.graph.nodes if n.op == "call_module"]
    assert len(targets) == len(set(targets))  # no module is called twice


def test_load_errors(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="checkpoint"):
        load_embedded_default(tmp_path / "missing.pt")
    bad = tmp_path / "bad.pt"
    torch.save({"weights": 1}, bad)
    with pytest.raises(ValueError, match="state_dict"):
        load_embedded_default(bad)


def test_save_checkpoint_round_trip_leaves_no_temporary_file(tmp_path) -> None:
    torch.manual_seed(0)
    net = ShapesNet().eval()
    path = tmp_path / "net.pt"
    save_checkpoint(net, path, {"note": "test"})
    assert os.listdir(tmp_path) == ["net.pt"]
    loaded = load_embedded_default(path)
    assert loaded.meta == {"note": "test"}
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), net(x))


def test_save_checkpoint_refuses_metadata_weights_only_cannot_load(tmp_path) -> None:
    with pytest.raises(TypeError, match="meta"):
        save_checkpoint(ShapesNet(), tmp_path / "x.pt", {"version": torch.__version__})
    with pytest.raises(TypeError, match="meta"):
        save_checkpoint(ShapesNet(), tmp_path / "x.pt", {"w": torch.zeros(1)})
    assert os.listdir(tmp_path) == []
