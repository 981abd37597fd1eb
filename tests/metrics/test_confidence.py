#!/usr/bin/env python3
"""Average drop & co., RPI, the threshold sweep and its AUC: hand-computed values on
a 2 x 2 pixel-linear model, equality with torchcam's ClassificationMetric, batching,
no-grad and input-safety properties, and argument errors."""

import math
from functools import partial

import pytest
import torch
from torch import Tensor
from torchcam.metrics import ClassificationMetric

from captum_cams._utils.maps import minmax_normalize
from captum_cams.metrics import (
    ThresholdSweep,
    api_apd_auc,
    average_drop,
    average_drop_in_deletion,
    average_probability_increase,
    drop_rate,
    increase_in_confidence,
    relative_probability_increase,
    threshold_sweep,
)

C = 1.0  # mm's largest value (exactly 1) for the map [[0, 1], [2, 4]] -> [0, .25, .5, 1]


def sig(z: float) -> float:
    return 1 / (1 + math.exp(-z))


# Contributions w ⊙ x = [[0.1, 0.4], [0.9, 1.6]]; soft mask [[0, C/4], [C/2, C]]:
# masked logit = (0.4/4 + 0.9/2 + 1.6) C = 2.15 C; the full logit is 3.0.
Y0, O0 = sig(3.0), sig(2.15 * C)


def test_average_drop_by_hand(linear_model, x22, map22):
    ad = average_drop(linear_model, x22, map22, target=0)
    assert ad.shape == (1,)
    assert ad.item() == pytest.approx((Y0 - O0) / Y0, rel=1e-12)
    # logits: (3 - 2.15 C) / 3
    ad_logit = average_drop(linear_model, x22, map22, target=0, score="logit")
    assert ad_logit.item() == pytest.approx((3.0 - 2.15 * C) / 3.0, rel=1e-12)


def test_increase_metrics_by_hand(linear_model, x22, map22):
    # class 1 has probability 1 - sigmoid(z0): it rises when z0 falls
    y1, o1 = 1 - Y0, 1 - O0
    assert increase_in_confidence(linear_model, x22, map22, target=1).item() == 1.0
    assert increase_in_confidence(linear_model, x22, map22, target=0).item() == 0.0
    assert drop_rate(linear_model, x22, map22, target=0).item() == 1.0
    assert drop_rate(linear_model, x22, map22, target=1).item() == 0.0
    api = average_probability_increase(linear_model, x22, map22, target=1)
    assert api.item() == pytest.approx((o1 - y1) / y1, rel=1e-12)
    assert average_probability_increase(linear_model, x22, map22, target=0).item() == 0.0
    assert average_drop(linear_model, x22, map22, target=1).item() == 0.0


def test_average_drop_in_deletion_by_hand(linear_model, x22, map22):
    # (1 - m) ⊙ x keeps logit 3 - 2.15 C; not clipped, so class 1 gives a negative value
    d = sig(3.0 - 2.15 * C)
    add = average_drop_in_deletion(linear_model, x22, map22, target=0)
    assert add.item() == pytest.approx((Y0 - d) / Y0, rel=1e-12)
    add1 = average_drop_in_deletion(linear_model, x22, map22, target=1)
    assert add1.item() == pytest.approx((1 - Y0 - (1 - d)) / (1 - Y0), rel=1e-12)
    assert add1.item() < 0
    # deleting the top half (pixels 4 and 3) leaves 0.1 + 0.4
    top = average_drop_in_deletion(linear_model, x22, map22, target=0, keep_top_fraction=0.5)
    assert top.item() == pytest.approx((Y0 - sig(0.5)) / Y0, rel=1e-12)


def test_keep_top_fraction_threshold_binary_and_baselines(linear_model, x22, map22):
    # top 50 %: pixels 4 and 3 -> logit 0.9 + 1.6
    ad = average_drop(linear_model, x22, map22, target=0, keep_top_fraction=0.5)
    assert ad.item() == pytest.approx((Y0 - sig(2.5)) / Y0, rel=1e-12)
    # top 15 % of 4 pixels: round(0.6) = 1 pixel
    ad15 = average_drop(linear_model, x22, map22, target=0, keep_top_fraction=0.15)
    assert ad15.item() == pytest.approx((Y0 - sig(1.6)) / Y0, rel=1e-12)
    # soft threshold 0.4: I ⊙ 1[I >= 0.4] keeps C/2 and C -> (0.45 + 1.6) C
    ad_t = average_drop(linear_model, x22, map22, target=0, threshold=0.4)
    assert ad_t.item() == pytest.approx((Y0 - sig(2.05 * C)) / Y0, rel=1e-12)
    # binary threshold 0.4 -> full contributions 0.9 + 1.6
    ad_b = average_drop(linear_model, x22, map22, target=0, threshold=0.4, binary=True)
    assert ad_b.item() == pytest.approx((Y0 - sig(2.5)) / Y0, rel=1e-12)
    # binary without threshold: 1[I != 0] -> 0.4 + 0.9 + 1.6
    ad_nz = average_drop(linear_model, x22, map22, target=0, binary=True)
    assert ad_nz.item() == pytest.approx((Y0 - sig(2.9)) / Y0, rel=1e-12)
    # constant baseline 1: m x + (1 - m) -> logit 2.15 C + Σ w (1 - m)
    w = [0.1, 0.2, 0.3, 0.4]
    m = [0.0, C / 4, C / 2, C]
    z = 2.15 * C + sum(wi * (1 - mi) for wi, mi in zip(w, m))
    ad_c = average_drop(linear_model, x22, map22, target=0, baselines=1.0, score="logit")
    assert ad_c.item() == pytest.approx((3.0 - z) / 3.0, rel=1e-12)


def test_relative_probability_increase_by_hand(linear_model, x22, map22):
    # TFT: M = 1[I_τ != 0]; τ = 0.4 keeps pixels 3 and 4 -> logit 2.5; class 1 rises
    y1 = 1 - Y0
    rpi = relative_probability_increase(linear_model, x22, map22, target=1, threshold=0.4)
    assert rpi.item() == pytest.approx(((1 - sig(2.5)) - y1) / y1, rel=1e-12)
    assert (
        relative_probability_increase(linear_model, x22, map22, target=0, threshold=0.4).item() == 0
    )


def test_low_resolution_map_is_upsampled(linear_model):
    # a 1 x 1 map is constant: mm gives zeros, the masked input is 0, logit 0
    x = torch.ones(1, 1, 2, 2, dtype=torch.float64)
    ad = average_drop(linear_model, x, torch.ones(1, 1, 1, 1, dtype=torch.float64), target=0)
    assert ad.item() == pytest.approx((sig(1.0) - 0.5) / sig(1.0), rel=1e-12)
    # N x h x w maps are accepted too
    same = average_drop(linear_model, x, torch.ones(1, 1, 1, dtype=torch.float64), target=0)
    assert torch.equal(ad, same)


def test_threshold_sweep_by_hand(linear_model, x22, map22):
    sweep = threshold_sweep(linear_model, x22, map22, target=0, score="logit")
    assert isinstance(sweep, ThresholdSweep)
    assert torch.allclose(
        sweep.thresholds, torch.tensor([i / 10 for i in range(11)], dtype=torch.float64)
    )
    # kept (soft) logit per t: all three non-zero pixels up to t = 0.2 (1/4 >= t),
    # pixels 3 and 4 for t = 0.3 ... 0.5 (1/2 >= t); only pixel 4 (value 1) for
    # 0.6 <= t <= 1.0
    expected = [2.15 * C] * 3 + [2.05 * C] * 3 + [1.6 * C] * 5
    assert torch.allclose(sweep.scores[0], torch.tensor(expected, dtype=torch.float64), rtol=1e-12)
    assert torch.allclose(sweep.apd[0], (3.0 - sweep.scores[0]) / 3.0, rtol=1e-12)
    assert torch.all(sweep.api == 0) and torch.all(sweep.ir == 0) and torch.all(sweep.dr == 1)
    assert sweep.original.item() == 3.0
    binary = threshold_sweep(linear_model, x22, map22, target=0, score="logit", binary=True)
    expected_b = [2.9] * 3 + [2.5] * 3 + [1.6] * 5
    assert torch.allclose(
        binary.scores[0], torch.tensor(expected_b, dtype=torch.float64), rtol=1e-12
    )
    # the RPI curve of TFT is the binary sweep's API, equal to the single-τ function
    tft = threshold_sweep(linear_model, x22, map22, target=1, thresholds=[0.1, 0.4], binary=True)
    one = relative_probability_increase(linear_model, x22, map22, target=1, threshold=0.4)
    assert tft.api[0, 1].item() == pytest.approx(one.item(), rel=1e-12)


def test_sweep_matches_the_single_metrics(cnn, make_batch):
    x, maps = make_batch()
    sweep = threshold_sweep(cnn, x, maps, thresholds=[0.0, 0.3, 0.6])
    for j, t in enumerate([0.0, 0.3, 0.6]):
        kw = dict(threshold=t)
        assert torch.allclose(sweep.apd[:, j], average_drop(cnn, x, maps, **kw), atol=1e-12)
        assert torch.allclose(
            sweep.api[:, j], average_probability_increase(cnn, x, maps, **kw), atol=1e-12
        )
        assert torch.equal(sweep.ir[:, j], increase_in_confidence(cnn, x, maps, **kw))
        assert torch.equal(sweep.dr[:, j], drop_rate(cnn, x, maps, **kw))
    # threshold 0 (soft) is the plain soft mask
    assert torch.allclose(sweep.apd[:, 0], average_drop(cnn, x, maps), atol=1e-12)


def test_api_apd_auc_by_hand():
    api = torch.tensor([[0.2, 0.4, 0.0, 0.0]], dtype=torch.float64)
    apd = torch.tensor([[0.0, 0.0, 0.3, 0.6]], dtype=torch.float64)
    # scaled API [0.5, 1, 0, 0]; sorted by APD (stable): (0, .5) (0, 1) (.3, 0) (.6, 0)
    # trapezoids: 0 + 0.3 * (1 + 0) / 2 + 0 = 0.15
    assert api_apd_auc((api, apd), per_example=True).tolist() == pytest.approx([0.15])
    assert api_apd_auc((api[0], apd[0])).item() == pytest.approx(0.15)
    # scaling API by a constant changes nothing (API is scaled per curve)
    assert api_apd_auc((5 * api, apd)).item() == pytest.approx(0.15)
    # the default averages the curves first: mean of these two rows is
    # API [0.1, 0.2, 0.1, 0.1] -> scaled [.5, 1, .5, .5]; APD [0.05, 0.1, 0.15, 0.3]
    api2 = torch.tensor([[0.2, 0.4, 0.0, 0.0], [0.0, 0.0, 0.2, 0.2]], dtype=torch.float64)
    apd2 = torch.tensor([[0.0, 0.0, 0.3, 0.6], [0.1, 0.2, 0.0, 0.0]], dtype=torch.float64)
    expected = 0.05 * (0.5 + 1) / 2 + 0.05 * (1 + 0.5) / 2 + 0.15 * (0.5 + 0.5) / 2
    assert api_apd_auc((api2, apd2)).item() == pytest.approx(expected)
    # zero API everywhere -> 0, never NaN
    assert api_apd_auc((torch.zeros(1, 3), torch.rand(1, 3))).item() == 0.0
    with pytest.raises(ValueError, match="same shape"):
        api_apd_auc((torch.zeros(1, 3), torch.zeros(1, 4)))


def test_api_apd_auc_of_a_sweep(cnn, make_batch):
    x, maps = make_batch()
    sweep = threshold_sweep(cnn, x, maps)
    per = api_apd_auc(sweep, per_example=True)
    assert per.shape == (3,) and torch.all(per >= 0)
    assert api_apd_auc(sweep).dim() == 0


# --- torchcam equality ---------------------------------------------------------------


class FixedCAM:
    """A torchcam CAM extractor stand-in that returns given (normalised) maps."""

    def __init__(self, model, maps: Tensor) -> None:
        self.model = model
        self.maps = maps

    def __call__(self, class_idx=None, scores=None, normalized=True, **kwargs):
        return [self.maps]

    def fuse_cams(self, cams):
        return cams[0]

    def _hooks_off(self):
        import contextlib

        return contextlib.nullcontext()


@pytest.mark.parametrize("target", [None, [0, 3, 4]])
def test_equals_torchcam_classification_metric(cnn, make_batch, target):
    x, _ = make_batch(size=8)
    raw = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    extractor = FixedCAM(cnn, minmax_normalize(raw)[:, 0])
    metric = ClassificationMetric(extractor, partial(torch.softmax, dim=-1))
    drops, increases = [], []
    for i in range(3):
        metric.reset()
        extractor.maps = minmax_normalize(raw[i : i + 1])[:, 0]
        metric.update(x[i : i + 1], class_idx=None if target is None else [target[i]])
        summary = metric.summary()
        drops.append(summary["avg_drop"])
        increases.append(summary["conf_increase"])
    ours_drop = average_drop(cnn, x, raw, target=target)
    ours_inc = increase_in_confidence(cnn, x, raw, target=target)
    # torchcam divides by (y + 1e-7) instead of y
    assert torch.allclose(ours_drop, torch.tensor(drops, dtype=torch.float64), rtol=1e-6, atol=1e-9)
    assert ours_inc.tolist() == increases
    # and on the whole batch at once (torchcam's summary is the batch mean)
    metric.reset()
    extractor.maps = minmax_normalize(raw)[:, 0]
    metric.update(x, class_idx=target)
    assert metric.summary()["avg_drop"] == pytest.approx(ours_drop.mean().item(), rel=1e-6)
    assert metric.summary()["conf_increase"] == pytest.approx(ours_inc.mean().item())


# --- batching, gradients, inputs ------------------------------------------------------

METRICS = [
    average_drop,
    increase_in_confidence,
    average_probability_increase,
    drop_rate,
    average_drop_in_deletion,
    relative_probability_increase,
]


@pytest.mark.parametrize("metric", METRICS)
def test_batching_grad_and_inputs(metric, cnn, make_batch):
    x, maps = make_batch(n=3)
    x.requires_grad_(True)
    maps.requires_grad_(True)
    before = x.detach().clone()
    results = [metric(cnn, x, maps, max_examples_per_batch=b) for b in (1, 2, None)]
    for r in results:
        assert r.shape == (3,)
        assert r.grad_fn is None and not r.requires_grad
        assert torch.allclose(r, results[-1], atol=1e-12, rtol=0)
    assert torch.equal(x.detach(), before)
    assert x.grad is None and all(p.grad is None for p in cnn.parameters())


def test_sweep_batching(cnn, make_batch):
    x, maps = make_batch(n=3)
    sweeps = [threshold_sweep(cnn, x, maps, max_examples_per_batch=b) for b in (1, 2, 5, None)]
    for s in sweeps:
        assert torch.allclose(s.scores, sweeps[-1].scores, atol=1e-12, rtol=0)
        assert s.scores.grad_fn is None


def test_per_example_additional_forward_args_follow_chunks(linear_model, x22, map22):
    x = x22.repeat(3, 1, 1, 1)
    maps = map22.repeat(3, 1, 1, 1)
    scale = torch.tensor([1.0, 0.5, 2.0], dtype=torch.float64)
    got = [
        average_drop(linear_model, x, maps, 0, scale, max_examples_per_batch=b, score="logit")
        for b in (1, 2, None)
    ]
    # logit drop is scale-free: every row (3 - 2.15 C) / 3
    for g in got:
        assert torch.allclose(g, torch.full((3,), (3.0 - 2.15 * C) / 3.0, dtype=torch.float64))
    probs = [
        average_drop(linear_model, x, maps, 0, scale, max_examples_per_batch=b)
        for b in (1, 2, None)
    ]
    expected = [(sig(3 * s) - sig(2.15 * C * s)) / sig(3 * s) for s in (1.0, 0.5, 2.0)]
    for p in probs:
        assert p.tolist() == pytest.approx(expected, rel=1e-12)


def test_model_state_is_kept(cnn, make_batch):
    x, maps = make_batch()
    cnn.train()
    flags = [p.requires_grad for p in cnn.parameters()]
    average_drop(cnn, x, maps)
    assert cnn.training and [p.requires_grad for p in cnn.parameters()] == flags


# --- errors ---------------------------------------------------------------------------


def test_errors_name_the_argument(cnn, make_batch):
    x, maps = make_batch(n=3)
    with pytest.raises(ValueError, match="attributions contains NaN"):
        average_drop(cnn, x, torch.full_like(maps, float("nan")))
    with pytest.raises(ValueError, match="attributions must hold one map per example"):
        average_drop(cnn, x, maps[:2])
    with pytest.raises(ValueError, match="attributions must be"):
        average_drop(cnn, x, maps[0, 0, 0])
    with pytest.raises(ValueError, match="inputs contains NaN"):
        average_drop(cnn, torch.full_like(x, float("nan")), maps)
    with pytest.raises(ValueError, match="inputs must be a 4-D"):
        average_drop(cnn, x[0], maps)
    with pytest.raises(ValueError, match="max_examples_per_batch"):
        average_drop(cnn, x, maps, max_examples_per_batch=0)
    with pytest.raises(ValueError, match="score"):
        average_drop(cnn, x, maps, score="softmax")
    with pytest.raises(ValueError, match="keep_top_fraction"):
        average_drop(cnn, x, maps, keep_top_fraction=0.0)
    with pytest.raises(ValueError, match="keep_top_fraction"):
        average_drop(cnn, x, maps, keep_top_fraction=1.5)
    with pytest.raises(ValueError, match="threshold"):
        average_drop(cnn, x, maps, threshold=-0.1)
    with pytest.raises(ValueError, match="at most one"):
        average_drop(cnn, x, maps, threshold=0.5, keep_top_fraction=0.5)
    with pytest.raises(ValueError, match="target out of range"):
        average_drop(cnn, x, maps, target=7)
    with pytest.raises(ValueError, match="baselines"):
        average_drop(cnn, x, maps, baselines="noise")
    with pytest.raises(ValueError, match="baselines must be broadcastable"):
        average_drop(cnn, x, maps, baselines=torch.zeros(2, 3, 8, 8))
    with pytest.raises(ValueError, match="thresholds"):
        threshold_sweep(cnn, x, maps, thresholds=[0.5, 2.0])


# --- probabilities that underflow ------------------------------------------------------------


def _float32(model: torch.nn.Module, other: float) -> torch.nn.Module:
    model.other = other
    return model.float()


@pytest.mark.parametrize("other", [120.0, 200.0, 500.0])
def test_drops_stay_exact_when_the_target_probability_underflows(linear_model, x22, map22, other):
    # target 0 has probability sig(z0 - other): 0 in float32 for these offsets, tiny in float64
    model, x, maps = _float32(linear_model, other), x22.float(), map22.float()
    y, o = sig(3.0 - other), sig(2.15 * C - other)
    assert torch.softmax(model(x), 1)[0, 0] == 0  # it does underflow
    expected_drop = (y - o) / y  # float64 closed form, ≈ 1 - e^-0.85
    ad = average_drop(model, x, maps, target=0)
    add = average_drop_in_deletion(model, x, maps, target=0)
    sweep = threshold_sweep(model, x, maps, target=0, thresholds=[0.0, 0.5])
    for value in (ad[0], sweep.apd[0, 0]):
        assert math.isfinite(value.item()) and value.item() == pytest.approx(expected_drop, 1e-5)
    # deletion keeps 1 - M = [[1, .75], [.5, 0]]: z = 0.1 + 0.3 + 0.45
    deleted = sig(0.85 - other)
    assert add.item() == pytest.approx((y - deleted) / y, rel=1e-5)
    assert average_probability_increase(model, x, maps, target=0).item() == 0.0
    assert sweep.api[0, 0].item() == 0.0 and torch.isfinite(sweep.api).all()


@pytest.mark.parametrize("other", [-120.0, -200.0, -500.0])
def test_increases_stay_exact_when_the_target_probability_underflows(
    linear_model, x22, map22, other
):
    # target 1 has probability sig(other - z0): it rises as the mask lowers z0
    model, x, maps = _float32(linear_model, other), x22.float(), map22.float()
    y, o = sig(other - 3.0), sig(other - 2.15 * C)
    api = average_probability_increase(model, x, maps, target=1)
    rpi = relative_probability_increase(model, x, maps, target=1, threshold=0.0, binary=False)
    for value in (api, rpi):
        assert value.item() == pytest.approx((o - y) / y, rel=1e-5)
    assert average_drop(model, x, maps, target=1).item() == 0.0


@pytest.mark.parametrize("scale", [200.0, 400.0])
def test_an_increase_beyond_the_float_range_is_refused_by_name(linear_model, x22, map22, scale):
    # z0 = 3·scale: o/y = e^{0.85·scale} > float32's largest number
    model, x, maps = _float32(linear_model, 0.0), (x22 * scale).float(), map22.float()
    with pytest.raises(
        ValueError, match=r"^average_probability_increase: the target probability of inputs \[0\]"
    ):
        average_probability_increase(model, x, maps, target=1)
    with pytest.raises(ValueError, match=r"^threshold_sweep: the target probability of inputs"):
        threshold_sweep(model, x, maps, target=1)
    # in float64 the same value is representable: no refusal, the closed form
    big = average_probability_increase(linear_model.double(), x22 * scale, map22, target=1)
    assert math.isfinite(big.item()) and big.item() > 1e30


# --- bad inputs through the model-scoring metrics -------------------------------------------

SCORED = [average_drop, average_probability_increase, increase_in_confidence, threshold_sweep]


@pytest.mark.parametrize("metric", SCORED, ids=lambda m: m.__name__)
@pytest.mark.parametrize("value, label", [(float("inf"), r"\+Inf"), (-float("inf"), "-Inf")])
def test_infinite_inputs_are_refused_by_name(linear_model, x22, map22, metric, value, label):
    x = x22.clone()
    x[0, 0, 1, 1] = value
    with pytest.raises(ValueError, match=rf"^inputs contains {label} \(1 of 4 values\)"):
        metric(linear_model, x, map22, target=0)


@pytest.mark.parametrize("metric", SCORED, ids=lambda m: m.__name__)
def test_the_models_own_error_on_another_dtype_or_channel_count_passes_unchanged(
    cnn, make_batch, metric
):
    # no guessing from PyTorch's messages: the model's own error, unwrapped
    x, maps = make_batch()
    with pytest.raises(RuntimeError) as error:
        metric(cnn, x.float(), maps.float(), target=0)
    assert type(error.value) is RuntimeError and error.value.__cause__ is None
    with pytest.raises(RuntimeError, match=r"to have 3 channels, but got 1 channels") as error:
        metric(cnn, x[:, :1], maps, target=0)
    assert type(error.value) is RuntimeError and error.value.__cause__ is None


@pytest.mark.parametrize("metric", SCORED, ids=lambda m: m.__name__)
@pytest.mark.parametrize("rows", [3, 5])
def test_extra_arguments_of_another_batch_are_named(linear_model, x22, map22, metric, rows):
    two = torch.cat([x22, x22])
    with pytest.raises(ValueError, match=rf"^additional_forward_args\[0\] has {rows} rows"):
        metric(linear_model, two, torch.cat([map22, map22]), target=0,
               additional_forward_args=(torch.ones(rows, dtype=torch.float64),))  # fmt: skip
