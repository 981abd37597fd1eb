#!/usr/bin/env python3
"""LayerLibraCam: Theorem 1 (the first-order error shrinks like α²); the default equal
to a direct unbatched float64 recomputation of Algorithm 1 as printed (calibration of
L itself), the normalised variant and the authors' pipeline (variant="authors") equal
to direct recomputations of theirs; the R/F/C switches, float16 libraries, the model
left as it was, and argument errors."""

import math
import warnings
from typing import List

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from captum_cams import LayerLibraCam, ReferenceLibrary


class Net(nn.Module):
    r"""``head(layer(pre(x)))`` with a twice-differentiable head (tanh)."""

    def __init__(self, classes: int = 4) -> None:
        super().__init__()
        self.pre = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.Softplus())
        self.layer = nn.Sequential(nn.Conv2d(6, 5, 3, stride=2, padding=1), nn.Softplus())
        self.head = nn.Sequential(
            nn.Conv2d(5, 5, 1),
            nn.Tanh(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(5, classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.layer(self.pre(x)))


def make_net() -> Net:
    torch.manual_seed(0)
    net = Net().double().eval()
    with torch.no_grad():
        net.head[-1].weight.mul_(20)
    return net


def library_of(
    net: Net, per_class: int = 5, dtype: torch.dtype = torch.float64
) -> ReferenceLibrary:
    r"""``per_class`` references per class from random inputs (class ``ℓ`` uses a shifted slice)."""
    generator = torch.Generator().manual_seed(3)
    x = torch.randn(per_class + 3, 3, 8, 8, generator=generator, dtype=torch.float64)
    with torch.no_grad():
        activations = net.layer(net.pre(x)).to(dtype)
    indices = [torch.arange(label, label + per_class) % x.shape[0] for label in range(4)]
    return ReferenceLibrary(activations, indices, tau=1.0 - 1e-9, max_per_class=per_class)


def _minmax(m: Tensor) -> Tensor:
    return (m - m.min()) / (m.max() - m.min()).clamp_min(1e-7)


def test_theorem_1_first_order_error_shrinks_like_alpha_squared() -> None:
    net = make_net()
    x = torch.randn(1, 3, 8, 8, dtype=torch.float64)
    x_r = torch.randn(1, 3, 8, 8, dtype=torch.float64)
    with torch.no_grad():
        a, a_r = net.layer(net.pre(x))[0], net.layer(net.pre(x_r))[0]
    alphas = [0.4, 0.2, 0.1, 0.05, 0.025]
    moved = torch.stack([a + alpha * (a_r - a) for alpha in alphas])
    library = ReferenceLibrary(moved, [torch.arange(5)] * 4, tau=0.5, max_per_class=5)
    for score in ("probability", "logit"):
        _, details = LayerLibraCam(net, net.layer, library=library).attribute(
            x, target=2, score=score, filter_references=False, calibrate=False, return_details=True
        )
        with torch.no_grad():
            out = net.head(torch.cat([a[None], moved]))
            f = torch.softmax(out, 1)[:, 2] if score == "probability" else out[:, 2]
        errors = (details.first_order - (f[0] - f[1:])).abs()
        slope = (errors[-1].log() - errors[0].log()) / math.log(alphas[-1] / alphas[0])
        assert 1.9 < float(slope) < 2.1, (score, errors.tolist())
        # the first-order term itself is linear in α (from the one gradient)
        ratios = details.first_order / torch.tensor(alphas, dtype=torch.float64)
        torch.testing.assert_close(ratios, ratios[:1].expand(5))


def _base_maps(library: ReferenceLibrary, c: int, a: Tensor, g: Tensor) -> List[Tensor]:
    r"""``up(mm(Σ_k g_k (A_k − A_r,k)))`` for every reference of class ``c``, one by one."""
    bases = []
    for ref in library.references(c, dtype=torch.float64):
        raw = (g * (a - ref)).sum(0)
        bases.append(
            F.interpolate(
                _minmax(raw)[None, None], size=(8, 8), mode="bilinear", align_corners=False
            )[0, 0]
        )
    return bases


def _direct(
    net: Net,
    x: Tensor,
    library: ReferenceLibrary,
    target: List[int],
    score: str,
    normalize: bool = False,
):
    r"""
    Algorithm 1 for one example at a time, gradient from autograd, one forward per
    mask; ``L`` thresholded as averaged (``normalize``: min-max normalised first).
    """
    maps, kept_all, chosen = [], [], []
    thresholds = [i / 10 for i in range(1, 11)]

    def f(inputs: Tensor, c: int) -> Tensor:
        out = net(inputs)[0]
        return torch.softmax(out, 0)[c] if score == "probability" else out[c]

    for i, c in enumerate(target):
        a = net.layer(net.pre(x[i : i + 1])).detach().requires_grad_(True)
        out = net.head(a)[0]
        value = torch.softmax(out, 0)[c] if score == "probability" else out[c]
        (g,) = torch.autograd.grad(value, a)
        a, g = a.detach()[0], g[0]
        with torch.no_grad():
            bases = _base_maps(library, c, a, g)
            s = torch.stack([f(x[i : i + 1] * b, c) for b in bases])
            keep = s >= s.mean() + s.std(correction=0)
            if not keep.any():
                keep[:] = True
            L = torch.stack([b for b, k in zip(bases, keep) if k]).mean(0)
            if normalize:
                L = _minmax(L)
            best_t, best_value = None, -math.inf
            for t in thresholds:
                value = float(f(x[i : i + 1] * (L * (L >= t)), c))
                if value > best_value:
                    best_t, best_value = t, value
            maps.append(L * (L >= best_t))
            kept_all.append(keep)
            chosen.append(best_t)
    return (
        torch.stack(maps).unsqueeze(1),
        torch.cat(kept_all),
        torch.tensor(chosen, dtype=torch.float64),
    )


@pytest.mark.parametrize(
    "score, normalize", [("probability", False), ("logit", False), ("probability", True)]
)
def test_filtering_and_calibration_equal_direct_recomputation(score: str, normalize: bool) -> None:
    net = make_net()
    library = library_of(net)
    x = torch.randn(3, 3, 8, 8, dtype=torch.float64)
    target = [0, 3, 1]
    maps, details = LayerLibraCam(net, net.layer, library=library).attribute(
        x,
        target=target,
        internal_batch_size=4,
        score=score,
        normalize_calibration=normalize,
        return_details=True,
    )
    expected_maps, expected_kept, expected_t = _direct(net, x, library, target, score, normalize)
    assert torch.equal(details.kept, expected_kept)
    assert not details.kept.all()  # the filter did drop references
    torch.testing.assert_close(details.thresholds, expected_t, rtol=0, atol=0)
    torch.testing.assert_close(maps, expected_maps, rtol=0, atol=1e-10)
    assert maps.shape == (3, 1, 8, 8) and float(maps.min()) >= 0 and float(maps.max()) <= 1
    unbatched = LayerLibraCam(net, net.layer, library=library).attribute(
        x, target=target, score=score, normalize_calibration=normalize
    )
    torch.testing.assert_close(unbatched, maps)


def test_default_thresholds_l_itself_not_its_normalisation() -> None:
    # L averages min-max normalised base maps, so its maximum is below 1 where they
    # disagree: Algorithm 1's grid then differs from the normalised variant's
    net = make_net()
    library = library_of(net)
    x = torch.randn(3, 3, 8, 8, dtype=torch.float64)
    cam = LayerLibraCam(net, net.layer, library=library)
    paper, details = cam.attribute(x, target=[0, 3, 1], return_details=True)
    assert float(details.averaged_maps.flatten(1).max(1).values.max()) < 1
    uncalibrated = cam.attribute(x, target=[0, 3, 1], calibrate=False)
    torch.testing.assert_close(uncalibrated, details.averaged_maps, rtol=0, atol=0)
    normalised = cam.attribute(x, target=[0, 3, 1], normalize_calibration=True)
    assert not torch.allclose(paper, normalised)


def _direct_authors(net: Net, x: Tensor, library: ReferenceLibrary, target: List[int]):
    r"""
    The authors' pipeline, one example and one forward at a time: gradient of the
    logit; filter on the softmax increases ``d`` keeping ``d ≥ mean(P) − std(P)`` of
    the positive ones; calibration over keep-fractions 10·i %, i = 0..9
    (``int(0.1·i·N)`` pixels), increases clipped at 0, the map one decile past the
    best returned.
    """
    maps, kept_all, fractions, best_all = [], [], [], []
    for i, c in enumerate(target):
        a = net.layer(net.pre(x[i : i + 1])).detach().requires_grad_(True)
        (g,) = torch.autograd.grad(net.head(a)[0][c], a)
        a, g = a.detach()[0], g[0]
        with torch.no_grad():
            p0 = torch.softmax(net(x[i : i + 1])[0], 0)[c]
            bases = _base_maps(library, c, a, g)
            d = torch.stack([torch.softmax(net(x[i : i + 1] * b)[0], 0)[c] - p0 for b in bases])
            positive = d[d > 0]
            if positive.numel() == 0:
                keep = torch.ones_like(d, dtype=torch.bool)
            else:
                keep = d >= positive.mean() - positive.std(correction=0)
            L = torch.stack([b for b, k in zip(bases, keep) if k]).mean(0)
            order = torch.argsort(L.flatten(), descending=True, stable=True)

            def top(count: int, L: Tensor = L, order: Tensor = order) -> Tensor:
                mask = torch.zeros(L.numel(), dtype=torch.float64)
                mask[order[:count]] = 1
                return L * mask.reshape(L.shape)

            best, best_value = 0, -math.inf
            for step in range(10):
                masked = x[i : i + 1] * top(int(0.1 * step * L.numel()))
                value = max(float(torch.softmax(net(masked)[0], 0)[c] - p0), 0.0)
                if value > best_value:
                    best, best_value = step, value
            maps.append(top(int(0.1 * (best + 1) * L.numel())))
            kept_all.append(keep)
            fractions.append((best + 1) / 10)
            best_all.append(best)
    return (
        torch.stack(maps).unsqueeze(1),
        torch.cat(kept_all),
        torch.tensor(fractions, dtype=torch.float64),
        best_all,
    )


def test_authors_variant_equals_direct_recomputation_of_their_pipeline() -> None:
    net = make_net()
    library = library_of(net)
    x = torch.randn(4, 3, 8, 8, dtype=torch.float64)
    target = [0, 3, 1, 2]
    cam = LayerLibraCam(net, net.layer, library=library)
    maps, details = cam.attribute(
        x, target=target, variant="authors", internal_batch_size=5, return_details=True
    )
    expected_maps, expected_kept, expected_fraction, best = _direct_authors(net, x, library, target)
    assert torch.equal(details.kept, expected_kept)
    torch.testing.assert_close(details.thresholds, expected_fraction, rtol=0, atol=0)
    torch.testing.assert_close(maps, expected_maps, rtol=0, atol=1e-10)
    assert details.calibration_scores is not None
    assert details.calibration_scores.shape == (4, 10)
    assert float(details.calibration_scores.min()) >= 0  # clipped increases
    # the returned map is one decile past the best-scored one, not the best itself
    assert any(b < 9 for b in best)
    pixels = (maps > 0).flatten(1).sum(1)
    assert pixels.tolist() == [int(0.1 * (b + 1) * 64) for b in best]
    paper = cam.attribute(x, target=target)
    assert not torch.allclose(paper, maps)


def test_authors_variant_fixes_its_settings() -> None:
    net = make_net()
    cam = LayerLibraCam(net, net.layer, library=library_of(net))
    x = torch.randn(1, 3, 8, 8, dtype=torch.float64)
    for bad in (
        {"score": "logit"},
        {"threshold_mode": "rank"},
        {"normalize_calibration": True},
        {"thresholds": [0.5]},
    ):
        with pytest.raises(ValueError, match="variant='authors' fixes"):
            cam.attribute(x, target=0, variant="authors", **bad)
    with pytest.raises(ValueError, match="variant"):
        cam.attribute(x, target=0, variant="official")


def test_ablation_switches() -> None:
    net = make_net()
    library = library_of(net)
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    cam = LayerLibraCam(net, net.layer, library=library)
    plain, details = cam.attribute(
        x, target=[1, 2], filter_references=False, calibrate=False, return_details=True
    )
    assert details.kept.all() and details.thresholds is None and details.reference_scores is None
    mean = torch.stack([details.base_maps[details.row_example == i].mean(0) for i in range(2)])
    torch.testing.assert_close(plain, mean)  # L itself, as Algorithm 1 averages it
    # without references A_r = 0: one base map mm(Σ g ⊙ A) per example; no library needed
    no_refs, details = LayerLibraCam(net, net.layer).attribute(
        x, target=[1, 2], use_references=False, calibrate=False, return_details=True
    )
    assert details.reference_indices.tolist() == [-1, -1]
    a = net.layer(net.pre(x)).detach().requires_grad_(True)
    (g,) = torch.autograd.grad(torch.softmax(net.head(a), 1)[[0, 1], [1, 2]].sum(), a)
    raw = (g * a).sum(1, keepdim=True).detach()
    expected = F.interpolate(
        torch.stack([_minmax(r) for r in raw]), size=(8, 8), mode="bilinear", align_corners=False
    )
    torch.testing.assert_close(no_refs, expected)  # one base map: its mean is itself
    # rank thresholds calibrate too, keeping the chosen fraction of pixels
    ranked, details = cam.attribute(x, target=[1, 2], threshold_mode="rank", return_details=True)
    kept_pixels = (ranked > 0).flatten(1).sum(1).double()
    assert bool((kept_pixels <= details.thresholds * 64 + 0.5).all())


def test_float16_library_model_state_and_hooks() -> None:
    net = make_net()
    net.train()
    half = library_of(net, dtype=torch.float16)
    full = library_of(net)
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    maps_half = LayerLibraCam(net, net.layer, library=half).attribute(
        x, target=[0, 1], calibrate=False
    )
    maps_full = LayerLibraCam(net, net.layer, library=full).attribute(
        x, target=[0, 1], calibrate=False
    )
    assert maps_half.dtype == torch.float64
    torch.testing.assert_close(maps_half, maps_full, atol=5e-2, rtol=0)
    assert net.training
    assert all(p.grad is None for p in net.parameters())
    assert not net.layer._forward_hooks and not net.layer._backward_hooks
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())


def test_argument_errors() -> None:
    net = make_net()
    library = library_of(net)
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    with pytest.raises(ValueError, match="library is required"):
        LayerLibraCam(net, net.layer).attribute(x, target=0)
    with pytest.raises(TypeError, match="ReferenceLibrary"):
        LayerLibraCam(net, net.layer, library="refs.pt")  # type: ignore[arg-type]
    empty = ReferenceLibrary(library.activations, [torch.arange(3)] * 3 + [torch.arange(0)], 0.5, 5)
    with pytest.raises(ValueError, match="no reference for class 3"):
        LayerLibraCam(net, net.layer, library=empty).attribute(x, target=3)
    cam = LayerLibraCam(net, net.layer, library=library)
    with pytest.raises(ValueError, match="score"):
        cam.attribute(x, target=0, score="energy")
    with pytest.raises(ValueError, match="threshold_mode"):
        cam.attribute(x, target=0, threshold_mode="percent")
    with pytest.raises(ValueError, match="internal_batch_size"):
        cam.attribute(x, target=0, internal_batch_size=0)
    with pytest.raises(ValueError, match="target"):
        cam.attribute(x, target=7)


def test_underflowing_probability_warns_and_names_logit() -> None:
    net = make_net()
    with torch.no_grad():
        net.head[-1].weight.mul_(1e4)  # logit gaps of thousands: softmax saturates
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    with torch.no_grad():
        logits = net(x)
    target = logits.argmin(dim=1)
    assert (torch.softmax(logits, 1).gather(1, target[:, None]) == 0).all()  # underflow
    libra = LayerLibraCam(net, net.layer)
    with pytest.warns(RuntimeWarning, match='score="logit"'):
        blank = libra.attribute(x, target=target, use_references=False, calibrate=False)
    assert (blank == 0).all()  # what the warning is about
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        maps = libra.attribute(
            x, target=target, use_references=False, calibrate=False, score="logit"
        )
    assert (maps.flatten(1).amax(dim=1) > 0).all()
