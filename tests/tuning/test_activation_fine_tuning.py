#!/usr/bin/env python3
"""Activation fine-tuning: the tuner's closed form, one training step against the
objective's gradient worked out with autograd, frozen parameters and buffers
bit-identical, an ordinary returned model (no tuner, no hooks, no DDP) and an
untouched user model; in 2 gloo processes (torchrun's environment), mask generation equals one
process and DDP training equals one process with the doubled batch."""

from pathlib import Path
from typing import Callable, Dict

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import TensorDataset

import captum_cams
from captum_cams import LayerGradCam
from captum_cams.tuning import ActivationFineTuner, TFTMasks, TunerNetwork, generate_tft_masks


class TinyNet(nn.Module):
    r"""stem (frozen) → block (the layer ℓ) → head; batch norm on both sides of ℓ."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())
        self.block = nn.Sequential(
            nn.Conv2d(4, 6, 3, padding=1, stride=2), nn.BatchNorm2d(6), nn.ReLU()
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(6, 3)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.pool(self.block(self.stem(x))).flatten(1))


def tiny_net() -> TinyNet:
    torch.manual_seed(0)
    model = TinyNet().double()
    with torch.no_grad():  # non-trivial running statistics
        for bn in (model.stem[1], model.block[1]):
            bn.running_mean.uniform_(-0.2, 0.2)
            bn.running_var.uniform_(0.5, 1.5)
    return model.eval()


def tiny_data(n: int = 8, seed: int = 5) -> TensorDataset:
    generator = torch.Generator().manual_seed(seed)
    images = torch.rand(n, 3, 8, 8, generator=generator, dtype=torch.float64)
    labels = torch.randint(0, 3, (n,), generator=generator)
    return TensorDataset(images, labels)


def tiny_masks(n: int = 8, seed: int = 6) -> Tensor:
    generator = torch.Generator().manual_seed(seed)
    return (torch.rand(n, 1, 4, 4, generator=generator) > 0.5).float()


def state(model: nn.Module) -> Dict[str, Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_tuner_is_two_1x1_convolutions_then_a_sigmoid() -> None:
    torch.manual_seed(1)
    tuner = TunerNetwork(5).double()
    a = torch.randn(2, 5, 3, 4, dtype=torch.float64)
    w1, b1 = tuner.conv1.weight[:, :, 0, 0], tuner.conv1.bias
    w2, b2 = tuner.conv2.weight[:, :, 0, 0], tuner.conv2.bias
    hidden = torch.einsum("hk,nkyx->nhyx", w1, a) + b1.reshape(1, 3, 1, 1)
    expected = 1 / (1 + torch.exp(-(torch.einsum("oh,nhyx->noyx", w2, hidden) + b2.item())))
    torch.testing.assert_close(tuner(a), expected, rtol=0, atol=1e-12)
    assert sum(p.numel() for p in tuner.parameters()) == 5 * 3 + 3 + 3 + 1


@pytest.mark.parametrize("paper", [True, False])
def test_one_step_follows_the_objective_and_freezes_the_layers_before(paper: bool) -> None:
    model, data = tiny_net(), tiny_data()
    # fractional masks, as generate_tft_masks's area resizing makes them
    masks = torch.rand(8, 1, 4, 4, generator=torch.Generator().manual_seed(6))
    before = state(model)
    lam, lr = 2.5, 0.1
    fine_tuner = ActivationFineTuner(model, model.block, mask_weight=lam)
    # items 1 and 4: TFT left their maps unchanged (no τ*)
    taus = torch.tensor([0.3, float("nan"), 0.5, 0.1, float("nan"), 0.2, 0.9, 0.4])
    # the paper (defaults): binary targets at the layer's resolution, squared error
    # summed over the cells (Eq. 5), every item counted (Eq. 8); the options: the
    # fractional targets, the mean over the cells, the unchanged items skipped
    options = {} if paper else dict(mask_target="area", mask_reduction="mean", skip_unchanged=True)
    tuned = fine_tuner.fit(
        data,
        TFTMasks(masks, taus),
        batch_size=8,
        lr=lr,
        momentum=0.0,
        show_progress=False,
        **options,
    )

    # the expected step: plain SGD on CE + λ·MSE over the whole batch, from the
    # tuner the seed gives and the model as it was
    reference = tiny_net()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        tuner = TunerNetwork(6).double()
    images, labels = data.tensors
    stem_out = reference.stem(images)
    activations = reference.block(stem_out)
    logits = reference.fc(reference.pool(activations).flatten(1))
    if paper:
        target = (masks >= 0.5).double()
        per_item = ((tuner(activations) - target) ** 2).flatten(1).sum(1)
        squared = per_item.mean()
    else:
        per_item = ((tuner(activations) - masks.double()) ** 2).flatten(1).mean(1)
        weights = torch.tensor([1.0, 0, 1, 1, 0, 1, 1, 1], dtype=torch.float64)
        squared = (per_item * weights).mean()
    loss = F.cross_entropy(logits, labels) + lam * squared
    trained = list(reference.block.parameters()) + list(reference.fc.parameters())
    grads = torch.autograd.grad(loss, trained + list(tuner.parameters()))
    names = [f"block.{n}" for n, _ in reference.block.named_parameters()] + [
        f"fc.{n}" for n, _ in reference.fc.named_parameters()
    ]
    tuned_params = dict(tuned.named_parameters())
    for name, param, grad in zip(names, trained, grads):
        torch.testing.assert_close(tuned_params[name], param - lr * grad, rtol=0, atol=1e-12)
        assert not torch.equal(tuned_params[name], param)
    assert fine_tuner.tuner is not None
    for param, expected_param, grad in zip(
        fine_tuner.tuner.parameters(), tuner.parameters(), grads[len(trained) :]
    ):
        torch.testing.assert_close(param, expected_param - lr * grad, rtol=0, atol=1e-12)
    torch.testing.assert_close(fine_tuner.history[0]["loss"], loss.item())
    torch.testing.assert_close(fine_tuner.history[0]["mse"], squared.item())

    # frozen: the stem's parameters and buffers bit-identical; the user's model untouched
    after = state(tuned)
    for key in before:
        if key.startswith("stem."):
            assert torch.equal(after[key], before[key]), key
    for key, value in state(model).items():
        assert torch.equal(value, before[key]), key


def test_the_returned_model_is_an_ordinary_model_of_the_same_architecture() -> None:
    model, data, masks = tiny_net(), tiny_data(), tiny_masks()
    model.fc.weight.requires_grad_(False)  # flags and modes come back as the user set them
    model.block.train()
    tuned = ActivationFineTuner(model, model.block).fit(
        data, TFTMasks(masks, torch.zeros(8)), batch_size=3, epochs=2, show_progress=False
    )
    assert type(tuned) is TinyNet and tuned is not model
    assert [n for n, _ in tuned.named_modules()] == [n for n, _ in model.named_modules()]
    assert not any("tuner" in n for n, _ in tuned.named_modules())
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in tuned.modules())
    assert all(p.grad is None for p in tuned.parameters())
    assert [m.training for m in tuned.modules()] == [m.training for m in model.modules()]
    assert [p.requires_grad for p in tuned.parameters()] == [
        p.requires_grad for p in model.parameters()
    ]
    # fc.weight was not trainable for the user, but AFT trains everything after ℓ
    assert not torch.equal(tuned.fc.weight, model.fc.weight)
    assert tuned(data.tensors[0]).shape == (8, 3)


def test_all_items_count_when_asked_or_given_plain_masks() -> None:
    model, data, masks = tiny_net(), tiny_data(), tiny_masks()
    taus = torch.full((8,), float("nan"))
    fit = dict(batch_size=8, lr=0.1, momentum=0.0, show_progress=False)
    plain = ActivationFineTuner(model, model.block).fit(data, masks, **fit)
    every = ActivationFineTuner(model, model.block).fit(data, TFTMasks(masks, taus), **fit)
    skipping = ActivationFineTuner(model, model.block)
    none = skipping.fit(data, TFTMasks(masks, taus), skip_unchanged=True, **fit)
    assert torch.equal(plain.fc.weight, every.fc.weight)
    assert skipping.history[0]["mse"] == 0.0
    assert not torch.allclose(plain.block[0].weight, none.block[0].weight)


def test_train_mode_updates_batch_norm_after_the_layer_only() -> None:
    model, data, masks = tiny_net(), tiny_data(), tiny_masks()
    tuned = ActivationFineTuner(model, model.block).fit(
        data, masks, batch_size=4, train_mode=True, show_progress=False
    )
    assert torch.equal(tuned.stem[1].running_mean, model.stem[1].running_mean)
    assert torch.equal(tuned.stem[1].running_var, model.stem[1].running_var)
    assert not torch.equal(tuned.block[1].running_mean, model.block[1].running_mean)
    # eval mode (the default) keeps every running statistic
    kept = ActivationFineTuner(model, model.block).fit(
        data, masks, batch_size=4, show_progress=False
    )
    assert torch.equal(kept.block[1].running_mean, model.block[1].running_mean)


def test_bad_arguments_are_named() -> None:
    model, data, masks = tiny_net(), tiny_data(), tiny_masks()
    with pytest.raises(ValueError, match="layer"):
        ActivationFineTuner(model, nn.ReLU())
    with pytest.raises(ValueError, match="mask_weight"):
        ActivationFineTuner(model, model.block, mask_weight=-1.0)
    fine_tuner = ActivationFineTuner(model, model.block)
    with pytest.raises(ValueError, match="one row per dataset item"):
        fine_tuner.fit(data, masks[:5], show_progress=False)
    with pytest.raises(ValueError, match="N x 1 x h x w"):
        fine_tuner.fit(data, masks[:, 0], show_progress=False)
    with pytest.raises(ValueError, match="\\[0, 1\\]"):
        fine_tuner.fit(data, masks * 2, show_progress=False)
    with pytest.raises(ValueError, match="layer's resolution"):
        fine_tuner.fit(data, torch.zeros(8, 1, 8, 8), show_progress=False)
    with pytest.raises(ValueError, match="optimizer"):
        fine_tuner.fit(data, masks, optimizer="lbfgs", show_progress=False)
    with pytest.raises(ValueError, match="mask_target"):
        fine_tuner.fit(data, masks, mask_target="nearest", show_progress=False)
    with pytest.raises(ValueError, match="mask_reduction"):
        fine_tuner.fit(data, masks, mask_reduction="max", show_progress=False)
    with pytest.raises(ValueError, match="not called"):
        unused = TinyNet().double()
        unused.extra = nn.Conv2d(6, 6, 1)
        ActivationFineTuner(unused, unused.extra).fit(data, masks, show_progress=False)
    assert captum_cams.ActivationFineTuner is ActivationFineTuner
    assert captum_cams.TunerNetwork is TunerNetwork


WORKER = """
import json, sys
import torch
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from test_activation_fine_tuning import tiny_data, tiny_masks, tiny_net
from captum_cams import LayerGradCam
from captum_cams._utils.distributed import rank_and_world_size
from captum_cams.tuning import ActivationFineTuner, generate_tft_masks

out = Path(sys.argv[2])
model, data = tiny_net(), tiny_data(n=12)
result = generate_tft_masks(
    LayerGradCam(model, model.block), data, cache_dir=out / "cache", batch_size=2,
    shard_size=3, show_progress=False,
)
rank, world = rank_and_world_size()
tuned = ActivationFineTuner(model, model.block, mask_weight=2.0).fit(
    tiny_data(n=8), tiny_masks(), epochs=2, batch_size=2, lr=0.05, show_progress=False
)
torch.save(
    {"world": world, "masks": result.masks, "taus": result.thresholds,
     "state": tuned.state_dict(), "type": type(tuned).__name__},
    out / f"rank{rank}.pt",
)
"""


def test_two_gloo_processes_equal_one_process(
    tmp_path: Path, gloo_processes: Callable[..., None]
) -> None:
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    gloo_processes(script, str(Path(__file__).parent), str(tmp_path), nproc=2)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert [r["world"] for r in ranks] == [2, 2]
    assert len(list((tmp_path / "cache").glob("shard_*.pt"))) == 4

    # one process, one thread (as each torchrun worker)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = tiny_net()
        single = generate_tft_masks(
            LayerGradCam(model, model.block), tiny_data(n=12), batch_size=2, shard_size=3,
            show_progress=False,
        )  # fmt: skip
        tuned = ActivationFineTuner(model, model.block, mask_weight=2.0).fit(
            tiny_data(n=8), tiny_masks(), epochs=2, batch_size=4, lr=0.05, show_progress=False
        )
    finally:
        torch.set_num_threads(threads)
    for r in ranks:
        assert torch.equal(r["masks"], single.masks)
        assert torch.equal(r["taus"].nan_to_num(-1), single.thresholds.nan_to_num(-1))
        assert r["type"] == "TinyNet"  # not the DDP wrapper
    # both ranks hold the same weights, those of one process with the doubled batch
    # (DDP averages the per-rank mean losses' gradients); the stem stays bit-identical
    expected = tuned.state_dict()
    for key, value in expected.items():
        assert torch.equal(ranks[0]["state"][key], ranks[1]["state"][key]), key
        torch.testing.assert_close(ranks[0]["state"][key], value, rtol=0, atol=1e-10)
        if key.startswith("stem."):
            assert torch.equal(ranks[0]["state"][key], model.state_dict()[key]), key
    assert not torch.equal(expected["fc.weight"], model.fc.weight)
