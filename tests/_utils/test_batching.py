#!/usr/bin/env python3
"""The chunked loop and its pass budget: the budget's sources and precedence, rows per
pass from the measured row size, halving on out-of-memory, the same passes on every
call, the progress bar; and, for every method and metric that evaluates many modified
copies, that one row per pass, every row in one pass and the default give the same
result in float64."""

from typing import Any, Callable, Dict, List

import pytest
import torch
from _captum_references import exact_channel_shapley
from torch import Tensor, nn

import captum_cams
from captum_cams import (
    LayerAblationCam,
    LayerGradCam,
    LayerIntegratedGradCam,
    LayerISCam,
    LayerLibraCam,
    LayerScoreCam,
    LayerShapCam,
    LayerSmoothGradCamPlusPlus,
    LayerSSCam,
    ReferenceLibrary,
    ThresholdFineTuned,
    reference_filtering,
    threshold_calibration,
    threshold_fine_tuning,
)
from captum_cams._utils import batching
from captum_cams._utils.batching import (
    DEFAULT_CPU_PASS_BUDGET,
    HEAD_LIVE_ACTIVATIONS,
    LIVE_ACTIVATIONS,
    MAX_CPU_ROWS_PER_PASS,
    PASS_BUDGET_ENV,
    UNMEASURED_ACTIVATION_RATIO,
    add_to_progress,
    evaluate_in_chunks,
    get_pass_budget,
    multiplied_rows,
    parse_budget,
    pass_budget,
    progress_bar,
    rows_per_pass,
    select_rows,
    set_pass_budget,
)
from captum_cams.metrics import (
    average_drop,
    average_drop_in_deletion,
    average_probability_increase,
    cascading_randomization,
    confidence_scores,
    deletion_auc,
    drop_rate,
    increase_in_confidence,
    insertion_auc,
    intervention_reliance,
    relative_probability_increase,
    remove_and_classify,
    road,
    threshold_sweep,
)
from captum_cams.tuning.threshold_calibration import threshold_calibration_authors

# --- the budget -------------------------------------------------------------------------


def test_parse_budget_reads_bytes_and_suffixes_and_names_bad_values() -> None:
    assert parse_budget(None) is None
    assert parse_budget(4096) == 4096
    assert parse_budget("64M") == 64 * 2**20
    assert parse_budget("1.5G") == int(1.5 * 2**30)
    assert parse_budget("512kiB") == 512 * 2**10
    assert parse_budget(" 100 ") == 100
    for bad in ("lots", "-3M", "", "1 T"):
        with pytest.raises(ValueError, match="budget must be"):
            parse_budget(bad)
    with pytest.raises(ValueError, match="at least one byte"):
        parse_budget(0)
    with pytest.raises(TypeError, match="budget must be an int"):
        parse_budget(1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="budget must be an int"):
        parse_budget(True)  # type: ignore[arg-type]


def test_budget_precedence_block_then_process_then_environment_then_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(PASS_BUDGET_ENV, raising=False)
    assert get_pass_budget() == get_pass_budget("cpu") == DEFAULT_CPU_PASS_BUDGET
    monkeypatch.setenv(PASS_BUDGET_ENV, "3M")
    assert get_pass_budget() == 3 * 2**20
    try:
        set_pass_budget("5M")
        assert get_pass_budget() == 5 * 2**20
        with pass_budget(7 * 2**20):
            assert get_pass_budget() == 7 * 2**20
            with pass_budget(None):  # keeps the enclosing block's
                assert get_pass_budget() == 7 * 2**20
            with pass_budget("1K"):
                assert get_pass_budget() == 1024
            assert get_pass_budget() == 7 * 2**20
        assert get_pass_budget() == 5 * 2**20
    finally:
        set_pass_budget(None)
    assert get_pass_budget() == 3 * 2**20
    monkeypatch.setenv(PASS_BUDGET_ENV, "much")
    with pytest.raises(ValueError, match=PASS_BUDGET_ENV):
        get_pass_budget()


def test_the_budget_is_exported_at_the_top() -> None:
    assert captum_cams.pass_budget is pass_budget
    assert captum_cams.set_pass_budget is set_pass_budget
    assert captum_cams.get_pass_budget is get_pass_budget


def test_rows_per_pass_divides_the_budget_by_a_rows_working_set() -> None:
    image = 3 * 224 * 224 * 4
    with pass_budget(100 * 2**20):
        # ResNet-50's largest activation at 224 px: 256 x 56 x 56 floats
        largest = 256 * 56 * 56 * 4
        assert rows_per_pass(image, largest, "cpu") == (100 * 2**20) // (
            image + LIVE_ACTIVATIONS * largest
        )
        unmeasured = image + LIVE_ACTIVATIONS * UNMEASURED_ACTIVATION_RATIO * image
        assert rows_per_pass(image, None, "cpu") == (100 * 2**20) // unmeasured
    with pass_budget(1):
        assert rows_per_pass(image, largest, "cpu") == 1  # never below one row
    with pass_budget(2**40):  # at most MAX_CPU_ROWS_PER_PASS rows through a whole model
        assert rows_per_pass(image, largest, "cpu") == MAX_CPU_ROWS_PER_PASS == 32
        assert rows_per_pass(image, largest, "cpu", head=True) == 2**40 // (
            image + HEAD_LIVE_ACTIVATIONS * largest
        )
    # a head's rows: the copy it is given is its largest tensor, counted twice in all
    resnet50_head_row = 2048 * 7 * 7 * 4
    with pass_budget(DEFAULT_CPU_PASS_BUDGET):
        assert rows_per_pass(resnet50_head_row, 2048 * 4, "cpu", head=True) == 41
        assert rows_per_pass(resnet50_head_row, 2048 * 4, "cpu") == 20


# --- the loop ---------------------------------------------------------------------------


def _recording_loop(
    model: nn.Module, inputs: Tensor, chunk: Any, sizes: List[int], fail_above: Any = None
) -> Tensor:
    def evaluate(rows: Tensor) -> Tensor:
        if fail_above is not None and rows.shape[0] > fail_above:
            raise torch.OutOfMemoryError("fake: out of memory")
        sizes.append(rows.shape[0])
        with torch.no_grad():
            return model(inputs[rows])

    return evaluate_in_chunks(evaluate, inputs.shape[0], chunk, inputs.device, inputs[0], model)


def _conv(channels: int) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, channels, 3, padding=1), nn.Flatten(1)).double().eval()


def test_the_first_pass_measures_a_row_and_sizes_the_other_passes() -> None:
    model, inputs = _conv(16), torch.randn(40, 3, 8, 8, dtype=torch.float64)
    row = 3 * 8 * 8 * 8
    largest = 16 * 8 * 8 * 8  # the convolution's output, and the flattened copy
    budget = 30 * (row + LIVE_ACTIVATIONS * largest) + 5
    sizes: List[int] = []
    with pass_budget(budget):
        result = _recording_loop(model, inputs, None, sizes)
    first = budget // (row + LIVE_ACTIVATIONS * UNMEASURED_ACTIVATION_RATIO * row)
    assert sizes[0] == first and sizes[1:] == [30] * ((40 - first) // 30) + (
        [(40 - first) % 30] if (40 - first) % 30 else []
    )
    with torch.no_grad():
        torch.testing.assert_close(result, model(inputs), rtol=0, atol=1e-12)
    # every call makes the same passes: results never depend on an earlier call
    again: List[int] = []
    with pass_budget(budget):
        _recording_loop(model, inputs, None, again)
    assert again == sizes


def test_an_integer_is_the_rows_per_pass_and_nothing_else() -> None:
    model, inputs = _conv(4), torch.randn(10, 3, 4, 4, dtype=torch.float64)
    sizes: List[int] = []
    with pass_budget(1):  # ignored: the caller chose
        _recording_loop(model, inputs, 4, sizes)
    assert sizes == [4, 4, 2]


def test_out_of_memory_halves_the_pass_and_is_remembered_for_the_model() -> None:
    model, inputs = _conv(4), torch.randn(20, 3, 4, 4, dtype=torch.float64)
    with torch.no_grad():
        expected = model(inputs)
    sizes: List[int] = []
    with pass_budget(2**30):  # 20 rows would fit the budget: the device says otherwise
        result = _recording_loop(model, inputs, None, sizes, fail_above=3)
    assert max(sizes) <= 3 and sum(sizes) == 20
    torch.testing.assert_close(result, expected, rtol=0, atol=1e-12)
    later: List[int] = []
    with pass_budget(2**30):
        _recording_loop(model, inputs, None, later)  # starts at what fitted
    assert max(later) <= 3
    with pytest.raises(torch.OutOfMemoryError):  # an integer is the caller's choice
        _recording_loop(_conv(4), inputs, 8, [], fail_above=3)
    with pytest.raises(torch.OutOfMemoryError):  # one row that does not fit
        _recording_loop(_conv(4), inputs, None, [], fail_above=0)


def test_without_a_row_the_first_pass_is_one_row() -> None:
    model, inputs = _conv(4), torch.randn(9, 3, 4, 4, dtype=torch.float64)
    sizes: List[int] = []

    def evaluate(rows: Tensor) -> Tensor:
        sizes.append(rows.shape[0])
        return model(inputs[rows])

    with torch.no_grad():
        result = evaluate_in_chunks(evaluate, 9, None, "cpu")
        torch.testing.assert_close(result, model(inputs))
    assert sizes[0] == 1 and sum(sizes) == 9


def test_no_rows_is_an_error() -> None:
    with pytest.raises(ValueError, match="num_rows"):
        evaluate_in_chunks(lambda rows: rows, 0, None, "cpu")


# --- the progress bar -------------------------------------------------------------------


class _Bar:
    made: List["_Bar"] = []

    def __init__(self, total: int = 0, **kwargs: Any) -> None:
        self.total, self.n, self.closed = total, 0, False
        self.kwargs = kwargs
        _Bar.made.append(self)

    def update(self, n: int) -> None:
        self.n += n

    def refresh(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def bars(monkeypatch: pytest.MonkeyPatch) -> List[_Bar]:
    import tqdm.auto

    _Bar.made = []
    monkeypatch.setattr(tqdm.auto, "tqdm", _Bar)
    return _Bar.made


def test_one_bar_counts_every_loop_of_a_call_and_nested_calls_report_to_it(bars) -> None:
    model, inputs = _conv(4), torch.randn(6, 3, 4, 4, dtype=torch.float64)
    with progress_bar(True, "outer"):
        _recording_loop(model, inputs, 4, [])
        with progress_bar(False, "inner"):  # a nested call without a bar of its own
            _recording_loop(model, inputs, None, [])
        with progress_bar(True, "inner"):  # or with one: still the outer bar
            _recording_loop(model, inputs, 5, [])
        add_to_progress(total=3, done=3, unit="maps")  # another unit: not this bar
    assert len(bars) == 1
    assert bars[0].total == bars[0].n == 18 and bars[0].closed
    assert bars[0].kwargs["desc"] == "outer"
    with progress_bar(False, "quiet"):
        _recording_loop(model, inputs, None, [])
    assert len(bars) == 1
    with pytest.raises(TypeError, match="show_progress must be a bool"):
        with progress_bar("yes", "bad"):  # type: ignore[arg-type]
            pass


# --- every method and metric: one row per pass = all rows in one pass = the default -----


def _cnn() -> nn.Module:
    torch.manual_seed(0)
    return (
        nn.Sequential(
            nn.Conv2d(3, 6, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(6, 5, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(2),
            nn.Flatten(),
            nn.Linear(20, 4),
        )
        .double()
        .eval()
    )


def _inputs() -> Dict[str, Any]:
    model = _cnn()
    x = torch.randn(3, 3, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    maps = torch.rand(3, 1, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    return {"model": model, "x": x, "maps": maps, "target": [0, 2, 3]}


def _library(model: nn.Module) -> ReferenceLibrary:
    with torch.no_grad():
        noise = torch.randn(
            5, 3, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(3)
        )
        activations = model[3](model[2](model[1](model[0](noise))))
    return ReferenceLibrary(activations, [torch.arange(5)] * 4, tau=0.5, max_per_class=5)


def _map_of(cam: Callable[..., Any]) -> Callable[[Any], Any]:
    # Score-CAM inside the cascade: its chunks follow the chunk of the test
    return lambda chunk: (
        cascading_randomization(
            _cnn(),
            lambda m, x, t: LayerScoreCam(m, m[2]).attribute(
                x, target=t, internal_batch_size=chunk
            ),
            _inputs()["x"],
            target=[0, 2, 3],
            layers=["6", "2"],
        ).correlations
    )


def _case(name: str) -> Callable[[Any, bool], Any]:
    r"""The function of every method and metric with many passes, as ``f(chunk, show)``."""
    d = _inputs()
    model, x, maps, target = d["model"], d["x"], d["maps"], d["target"]
    metric_kwargs = dict(target=target)
    cases: Dict[str, Callable[[Any, bool], Any]] = {
        "LayerScoreCam": lambda c, s: LayerScoreCam(model, model[2]).attribute(
            x, target=target, internal_batch_size=c, show_progress=s, score="probability"
        ),
        "LayerAblationCam": lambda c, s: LayerAblationCam(model, model[2]).attribute(
            x, target=target, internal_batch_size=c, show_progress=s
        ),
        "LayerShapCam": lambda c, s: LayerShapCam(model, model[2]).attribute(
            x, target=target, num_permutations=3, internal_batch_size=c, show_progress=s
        ),
        "exact_channel_shapley": lambda c, s: _exact_shapley(model, x, target, c),
        "LayerIntegratedGradCam": lambda c, s: LayerIntegratedGradCam(model, model[2]).attribute(
            x, target=target, n_steps=5, internal_batch_size=c, show_progress=s
        ),
        "LayerLibraCam": lambda c, s: (
            LayerLibraCam(model, model[2], library=_library(model))
            .attribute(
                x, target=target, internal_batch_size=c, show_progress=s, return_details=True
            )[1]
            .calibration_scores
        ),
        "LayerLibraCam authors": lambda c, s: (
            LayerLibraCam(model, model[2], library=_library(model))
            .attribute(x, target=target, internal_batch_size=c, show_progress=s, variant="authors")
            .flatten()
        ),
        "ThresholdFineTuned": lambda c, s: (
            ThresholdFineTuned(LayerGradCam(model, model[2]))
            .attribute(
                x, target=target, max_examples_per_batch=c, show_progress=s, return_details=True
            )[1]
            .rpi_curves
        ),
        "threshold_fine_tuning": lambda c, s: (
            threshold_fine_tuning(
                model, x, maps, max_examples_per_batch=c, show_progress=s, **metric_kwargs
            ).rpi_curves
        ),
        "threshold_calibration": lambda c, s: (
            threshold_calibration(
                model, x, maps, max_examples_per_batch=c, show_progress=s, **metric_kwargs
            ).scores
        ),
        "threshold_calibration_authors": lambda c, s: (
            threshold_calibration_authors(
                model, x, maps, max_examples_per_batch=c, show_progress=s, **metric_kwargs
            ).scores
        ),
        "reference_filtering": lambda c, s: (
            reference_filtering(
                model,
                x,
                torch.cat([maps, maps.flip(-1), maps.flip(-2)], dim=1),
                max_examples_per_batch=c,
                show_progress=s,
                **metric_kwargs,
            ).scores
        ),  # fmt: skip
        "confidence_scores": lambda c, s: torch.stack(
            confidence_scores(model, x, maps, max_examples_per_batch=c, show_progress=s)[:2]
        ),
        "threshold_sweep": lambda c, s: (
            threshold_sweep(
                model, x, maps, max_examples_per_batch=c, show_progress=s, **metric_kwargs
            ).scores
        ),
        "insertion_auc": lambda c, s: (
            insertion_auc(
                model,
                x,
                maps,
                max_examples_per_batch=c,
                show_progress=s,
                return_curves=True,
                step=0.125,
                **metric_kwargs,
            ).curves
        ),  # fmt: skip
        "deletion_auc": lambda c, s: (
            deletion_auc(
                model,
                x,
                maps,
                max_examples_per_batch=c,
                show_progress=s,
                return_curves=True,
                step=0.125,
                **metric_kwargs,
            ).curves
        ),  # fmt: skip
        "remove_and_classify": lambda c, s: (
            remove_and_classify(
                model,
                x,
                maps,
                max_examples_per_batch=c,
                show_progress=s,
                baselines="zero",
                **metric_kwargs,
            ).correct
        ),  # fmt: skip
        "intervention_reliance": lambda c, s: intervention_reliance(
            model,
            x,
            torch.stack([x * 0.5, x.flip(-1), x * 0], dim=1),
            max_examples_per_batch=c,
            show_progress=s,
            **metric_kwargs,
        ),  # fmt: skip
        "cascading_randomization": lambda c, s: _map_of(LayerScoreCam)(c),
        "LayerSSCam": lambda c, s: LayerSSCam(model, model[2]).attribute(
            x, target=target, num_samples=2, internal_batch_size=c, show_progress=s
        ),
        "LayerISCam": lambda c, s: LayerISCam(model, model[2]).attribute(
            x, target=target, num_samples=3, internal_batch_size=c, show_progress=s
        ),
        "road": lambda c, s: road(
            model,
            x,
            maps,
            percentages=(25, 50),
            max_examples_per_batch=c,
            show_progress=s,
            **metric_kwargs,
        ),  # fmt: skip
    }
    for metric in (
        average_drop,
        increase_in_confidence,
        average_probability_increase,
        drop_rate,
        average_drop_in_deletion,
        relative_probability_increase,
    ):
        cases[metric.__name__] = lambda c, s, metric=metric: metric(
            model, x, maps, max_examples_per_batch=c, show_progress=s, **metric_kwargs
        )
    return cases[name]


def _exact_shapley(model: nn.Module, x: Tensor, target: List[int], chunk: Any) -> Tensor:
    head = nn.Sequential(*list(model)[3:])
    with torch.no_grad():
        activations = model[2](model[1](model[0](x)))
    return exact_channel_shapley(head, activations, torch.tensor(target), chunk)


MANY_PASSES = [
    "LayerScoreCam",
    "LayerAblationCam",
    "LayerShapCam",
    "exact_channel_shapley",
    "LayerIntegratedGradCam",
    "LayerLibraCam",
    "LayerLibraCam authors",
    "ThresholdFineTuned",
    "threshold_fine_tuning",
    "threshold_calibration",
    "threshold_calibration_authors",
    "reference_filtering",
    "confidence_scores",
    "average_drop",
    "increase_in_confidence",
    "average_probability_increase",
    "drop_rate",
    "average_drop_in_deletion",
    "relative_probability_increase",
    "threshold_sweep",
    "insertion_auc",
    "deletion_auc",
    "remove_and_classify",
    "intervention_reliance",
    "cascading_randomization",
    "LayerSSCam",
    "LayerISCam",
    "road",
]


@pytest.mark.parametrize("name", MANY_PASSES)
def test_one_row_per_pass_equals_every_row_in_one_pass_and_the_default(name: str) -> None:
    with pass_budget(1):  # the default at its smallest: one row per pass
        one_per_pass = _case(name)(None, False)
    all_at_once = _case(name)(10**6, False)
    default = _case(name)(None, False)
    torch.testing.assert_close(one_per_pass, all_at_once, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(default, all_at_once, rtol=1e-10, atol=1e-12)


SHOWS_PROGRESS = [n for n in MANY_PASSES if n not in ("exact_channel_shapley",)]


@pytest.mark.parametrize("name", SHOWS_PROGRESS)
def test_show_progress_gives_one_bar_over_every_pass(name: str, bars) -> None:
    if name == "cascading_randomization":
        d = _inputs()
        cascading_randomization(
            _cnn(), lambda m, x, t: LayerScoreCam(m, m[2]).attribute(x, target=t), d["x"],
            target=d["target"], layers=["6", "2"], show_progress=True,
        )  # fmt: skip
        assert len(bars) == 1 and bars[0].total == bars[0].n == 3  # the maps
        return
    _case(name)(2, True)
    assert len(bars) == 1
    assert bars[0].total == bars[0].n > 0 and bars[0].closed
    _case(name)(2, False)
    assert len(bars) == 1  # off by default


def test_every_method_and_metric_with_many_passes_takes_show_progress() -> None:
    import inspect

    for function in (
        LayerScoreCam.attribute,
        LayerAblationCam.attribute,
        LayerShapCam.attribute,
        LayerIntegratedGradCam.attribute,
        LayerLibraCam.attribute,
        ThresholdFineTuned.attribute,
        threshold_fine_tuning,
        threshold_calibration,
        threshold_calibration_authors,
        reference_filtering,
        confidence_scores,
        average_drop,
        increase_in_confidence,
        average_probability_increase,
        drop_rate,
        average_drop_in_deletion,
        relative_probability_increase,
        threshold_sweep,
        insertion_auc,
        deletion_auc,
        remove_and_classify,
        intervention_reliance,
        cascading_randomization,
        LayerSSCam.attribute,
        LayerISCam.attribute,
        LayerSmoothGradCamPlusPlus.attribute,
        road,
    ):
        parameter = inspect.signature(function).parameters["show_progress"]
        assert parameter.default is False, function.__qualname__


def test_the_defaults_follow_the_budget() -> None:
    import inspect

    for function, name in (
        (LayerScoreCam.attribute, "internal_batch_size"),
        (LayerAblationCam.attribute, "internal_batch_size"),
        (LayerShapCam.attribute, "internal_batch_size"),
        (LayerIntegratedGradCam.attribute, "internal_batch_size"),
        (LayerLibraCam.attribute, "internal_batch_size"),
        (ThresholdFineTuned.attribute, "max_examples_per_batch"),
        (threshold_fine_tuning, "max_examples_per_batch"),
        (threshold_sweep, "max_examples_per_batch"),
        (deletion_auc, "max_examples_per_batch"),
        (average_drop, "max_examples_per_batch"),
        (LayerSSCam.attribute, "internal_batch_size"),
        (LayerISCam.attribute, "internal_batch_size"),
        (road, "max_examples_per_batch"),
    ):
        assert inspect.signature(function).parameters[name].default is None
    assert batching.DEFAULT_CPU_PASS_BUDGET == 32 * 2**20


def test_select_rows_is_advanced_indexing_with_its_gradient() -> None:
    values = torch.randn(4, 3, 2, dtype=torch.float64, requires_grad=True)
    index = torch.tensor([2, 2, 0, 3, 2])
    picked = select_rows(values, index)
    torch.testing.assert_close(picked, values[index], rtol=0, atol=0)
    (weights,) = torch.autograd.grad((picked * torch.arange(30.0).view(5, 3, 2)).sum(), values)
    (expected,) = torch.autograd.grad(
        (values[index] * torch.arange(30.0).view(5, 3, 2)).sum(), values
    )
    torch.testing.assert_close(weights, expected, rtol=0, atol=0)
    assert select_rows(torch.arange(3), torch.tensor([1, 1])).tolist() == [1, 1]


@pytest.mark.parametrize(
    "index",
    [
        [0] * 9 + [1] * 7 + [2] * 8,  # runs of one example: broadcast run by run
        [0, 1, 2, 0, 1, 2, 0, 1],  # runs of one row: select, then multiply
        [2],
        [],
    ],
)
@pytest.mark.parametrize("factor_shape", ["rows", "channels", "bool", "one"])
def test_multiplied_rows_is_the_selected_rows_times_the_factors(
    index: List[int], factor_shape: str
) -> None:
    generator = torch.Generator().manual_seed(0)
    values = torch.randn(3, 4, 5, 6, dtype=torch.float64, generator=generator)
    picked = torch.tensor(index, dtype=torch.long)
    rows = len(index)
    factors = {
        "rows": torch.rand(rows, 1, 5, 6, dtype=torch.float64, generator=generator),
        "channels": torch.rand(rows, 4, 1, 1, dtype=torch.float64, generator=generator),
        "bool": torch.rand(rows, 4, 1, 1, generator=generator) > 0.5,
        "one": torch.rand(1, 1, 5, 6, dtype=torch.float64, generator=generator),
    }[factor_shape]
    product = multiplied_rows(values, picked, factors)
    expected = values[picked] * factors
    assert product.dtype == expected.dtype and product.shape == expected.shape
    torch.testing.assert_close(product, expected, rtol=0, atol=0)


def test_multiplied_rows_keeps_the_gradient_and_takes_non_contiguous_values() -> None:
    values = torch.randn(2, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    index = torch.tensor([0] * 6 + [1] * 6)
    factors = torch.rand(12, 1, 4, 4, dtype=torch.float64)
    (grad,) = torch.autograd.grad(multiplied_rows(values, index, factors).sum(), values)
    (expected,) = torch.autograd.grad((values[index] * factors).sum(), values)
    torch.testing.assert_close(grad, expected, rtol=0, atol=0)
    strided = values.detach().transpose(2, 3)
    torch.testing.assert_close(
        multiplied_rows(strided, index, factors), strided[index] * factors, rtol=0, atol=0
    )
