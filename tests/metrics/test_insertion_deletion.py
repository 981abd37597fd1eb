#!/usr/bin/env python3
"""Insertion/deletion AUC: hand-computed curves on a 2 x 2 pixel-linear model,
equality with torchcam's DeletionInsertionMetric, batching and safety properties."""

from functools import partial

import pytest
import torch
from torchcam.metrics import DeletionInsertionMetric

from captum_cams.metrics import InsertionDeletionResult, deletion_auc, gaussian_blur, insertion_auc


def test_deletion_curve_by_hand(linear_model, x22, map22):
    # contributions [[0.1, 0.4], [0.9, 1.6]], map order: 1.6, 0.9, 0.4, 0.1
    res = deletion_auc(
        linear_model, x22, map22, target=0, step=0.25, score="logit", return_curves=True
    )
    assert isinstance(res, InsertionDeletionResult)
    assert res.fractions.tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert res.curves[0].tolist() == pytest.approx([3.0, 1.4, 0.5, 0.1, 0.0], abs=1e-12)
    # 0.25 * ((3 + 1.4) + (1.4 + 0.5) + (0.5 + 0.1) + (0.1 + 0)) / 2 = 0.875
    assert res.auc.item() == pytest.approx(0.875, abs=1e-12)
    plain = deletion_auc(linear_model, x22, map22, target=0, step=0.25, score="logit")
    assert torch.equal(plain, res.auc)


def test_insertion_curve_by_hand(linear_model, x22, map22):
    res = insertion_auc(
        linear_model,
        x22,
        map22,
        target=0,
        step=0.25,
        baselines="zero",
        score="logit",
        return_curves=True,
    )
    assert res.curves[0].tolist() == pytest.approx([0.0, 1.6, 2.5, 2.9, 3.0], abs=1e-12)
    # 0.25 * (1.6 + 4.1 + 5.4 + 5.9) / 2 = 2.125
    assert res.auc.item() == pytest.approx(2.125, abs=1e-12)
    # with probabilities of class 0 the curve is sigmoid of the logits
    prob = insertion_auc(
        linear_model, x22, map22, target=0, step=0.25, baselines="zero", return_curves=True
    )
    expected = torch.sigmoid(torch.tensor([0.0, 1.6, 2.5, 2.9, 3.0], dtype=torch.float64))
    assert torch.allclose(prob.curves[0], expected, atol=1e-12)
    assert prob.auc.item() == pytest.approx(torch.trapezoid(expected, dx=0.25).item(), abs=1e-12)


def test_constant_baseline_and_default_steps(linear_model, x22, map22):
    # baseline 1 everywhere: deleted pixels contribute w instead of w x
    res = deletion_auc(
        linear_model,
        x22,
        map22,
        target=0,
        step=0.5,
        baselines=1.0,
        score="logit",
        return_curves=True,
    )
    # k = 0, 2, 4: [3.0, 0.1 + 0.4 + 0.3 + 0.4, 0.1 + 0.2 + 0.3 + 0.4]
    assert res.curves[0].tolist() == pytest.approx([3.0, 1.2, 1.0], abs=1e-12)
    default = deletion_auc(linear_model, x22, map22, target=0, return_curves=True)
    assert default.curves.shape == (1, 41)
    # 4 pixels: k = round(0.025 i * 4) — the fractions actually perturbed are on a 1/4 grid
    assert set(default.fractions.tolist()) == {0.0, 0.25, 0.5, 0.75, 1.0}


def test_blur_baseline_by_hand():
    img = torch.tensor([[[[0.0, 3.0, 0.0]]]], dtype=torch.float64)
    out = gaussian_blur(img, kernel_size=3, sigma=1.0)
    e = torch.exp(torch.tensor(-0.5, dtype=torch.float64)).item()
    # replicated borders: left pixel sees (0, 0, 3), middle (0, 3, 0), right (3, 0, 0)
    k = [e / (1 + 2 * e), 1 / (1 + 2 * e), e / (1 + 2 * e)]
    assert out[0, 0, 0].tolist() == pytest.approx([3 * k[2], 3 * k[1], 3 * k[0]], abs=1e-12)
    const = torch.full((1, 2, 5, 5), 2.5, dtype=torch.float64)
    assert torch.allclose(gaussian_blur(const), const)


def _torchcam_extractor(model, maps):
    import contextlib

    class Fixed:
        def __init__(self):
            self.model = model
            self.maps = maps

        def __call__(self, class_idx=None, scores=None, normalized=True, **kwargs):
            return [self.maps]

        def fuse_cams(self, cams):
            return cams[0]

        def _hooks_off(self):
            return contextlib.nullcontext()

    return Fixed()


@pytest.mark.parametrize("size", [(4, 10), (8, 10)])
def test_equals_torchcam_deletion_insertion(cnn, size):
    # with H*W a multiple of 40, torchcam's 40 steps hit the same counts as our 2.5 % steps
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(3, 3, *size, generator=gen, dtype=torch.float64)
    maps = torch.rand(3, 1, *size, generator=gen, dtype=torch.float64)
    extractor = _torchcam_extractor(cnn, maps[:, 0])
    metric = DeletionInsertionMetric(
        extractor, partial(torch.softmax, dim=-1), steps=40, batch_size=7
    )
    dels, inss = [], []
    for i in range(3):
        metric.reset()
        extractor.maps = maps[i : i + 1, 0]
        metric.update(x[i : i + 1], class_idx=[1])
        dels.append(metric.summary()["deletion_auc"])
        inss.append(metric.summary()["insertion_auc"])
    ours_del = deletion_auc(cnn, x, maps, target=1)
    ours_ins = insertion_auc(cnn, x, maps, target=1, baselines="zero")
    # torchcam integrates against float32 fractions
    assert torch.allclose(ours_del, torch.tensor(dels, dtype=torch.float64), atol=1e-6)
    assert torch.allclose(ours_ins, torch.tensor(inss, dtype=torch.float64), atol=1e-6)


def test_brute_force_reimplementation(cnn, make_batch):
    """A direct loop over examples and steps gives the same curves (blur baseline)."""
    x, maps = make_batch(n=2, size=8, map_size=4)
    res = insertion_auc(cnn, x, maps, step=0.125, return_curves=True)
    up = torch.nn.functional.interpolate(maps, size=(8, 8), mode="bilinear", align_corners=False)
    blurred = gaussian_blur(x)
    with torch.no_grad():
        target = cnn(x).argmax(1)
        for i in range(2):
            order = torch.argsort(up[i].flatten(), descending=True, stable=True)
            for s, k in enumerate(range(0, 65, 8)):
                keep = torch.zeros(64, dtype=torch.float64)
                keep[order[:k]] = 1
                keep = keep.reshape(1, 1, 8, 8)
                xi = keep * x[i : i + 1] + (1 - keep) * blurred[i : i + 1]
                p = torch.softmax(cnn(xi), 1)[0, target[i]]
                assert res.curves[i, s].item() == pytest.approx(p.item(), abs=1e-12)


@pytest.mark.parametrize("func", [deletion_auc, insertion_auc])
def test_batching_grad_and_inputs(func, cnn, make_batch):
    x, maps = make_batch(n=3)
    x.requires_grad_(True)
    before = x.detach().clone()
    results = [
        func(cnn, x, maps, max_examples_per_batch=b, return_curves=True) for b in (1, 2, None)
    ]
    for r in results:
        assert r.auc.shape == (3,) and r.curves.shape == (3, 41)
        assert r.auc.grad_fn is None and r.curves.grad_fn is None
        assert torch.allclose(r.curves, results[-1].curves, atol=1e-12, rtol=0)
    assert torch.equal(x.detach(), before) and x.grad is None


def test_errors(cnn, make_batch):
    x, maps = make_batch(n=3)
    with pytest.raises(ValueError, match="step"):
        deletion_auc(cnn, x, maps, step=0)
    with pytest.raises(ValueError, match="attributions must hold one map per example"):
        insertion_auc(cnn, x, maps[:1])
    with pytest.raises(ValueError, match="attributions contains NaN"):
        insertion_auc(cnn, x, maps * float("nan"))
    with pytest.raises(ValueError, match="max_examples_per_batch"):
        insertion_auc(cnn, x, maps, max_examples_per_batch=-2)
