#!/usr/bin/env python3
"""The benchmark's data sources: batches carry part masks and extras, model-grounded
truth reaches the metrics, and metrics whose needs the data lacks are skipped or refused."""

from typing import Dict, List

import pytest
import torch
from torch import Tensor

from captum_cams.kit.benchmark import (
    DEFAULT_METRICS,
    METRICS,
    BenchmarkData,
    DataBatch,
    EmbeddedData,
    MetricOutput,
    MetricSpec,
    metrics_for,
    run_benchmark,
)
from captum_cams.kit.datasets import GroundTruthShapes
from captum_cams.kit.inputs import InputError
from captum_cams.kit.models import embedded_default_layer, load_embedded_default


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    return load_embedded_default()


def test_embedded_batches_carry_the_datasets_part_masks() -> None:
    batch = EmbeddedData(3, task="shapes").load([2, 0])
    assert isinstance(batch, DataBatch) and batch.extras == {}
    dataset = GroundTruthShapes(3, split="test", seed=0, return_annotations=True)
    for position, index in enumerate([2, 0]):
        image, label, annotation = dataset[index]
        assert torch.equal(batch.images[position], image)
        assert int(batch.labels[position]) == label
        assert torch.equal(batch.part_masks[position], annotation["part_masks"])
    assert batch.part_masks.dtype == torch.bool and batch.part_masks.shape == (2, 4, 64, 64)
    # the boxes hold the parts
    assert not (batch.part_masks & ~batch.masks).any()


def test_a_huge_embedded_count_costs_nothing_up_front() -> None:
    data = EmbeddedData(10**12, task="shapes")
    assert len(data) == 10**12
    assert data.load([10**12 - 1]).images.shape == (1, 3, 64, 64)


class _Reliance(EmbeddedData):
    """Embedded data whose model-grounded truth is the explained class itself."""

    provides = ("target_copy",)

    def __init__(self, num_images: int) -> None:
        super().__init__(num_images, task="shapes")
        self.calls: List[bool] = []

    def ground_truth(self, model: torch.nn.Module, batch: DataBatch, target: Tensor) -> Dict:
        self.calls.append(torch.is_grad_enabled())
        return {"target_copy": target.double() + 0.5}


def _reads_extras(m: object) -> MetricOutput:
    return MetricOutput(m.extras["target_copy"])  # type: ignore[attr-defined]


def test_ground_truth_reaches_the_metric_once_per_batch(
    model: torch.nn.Module, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(METRICS, "copy", MetricSpec("copy", _reads_extras, needs=("target_copy",)))
    data = _Reliance(5)
    result = run_benchmark(
        model, embedded_default_layer(model), data, ["gradcam"], ["copy", "average_drop"],
        batch_size=2, progress=False,
    )  # fmt: skip
    assert data.calls == [False, False, False]  # three batches, each under no_grad
    assert [row["copy"] for row in result.rows] == [row["target"] + 0.5 for row in result.rows]


def test_metrics_whose_needs_are_missing_are_skipped_or_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(METRICS, "copy", MetricSpec("copy", _reads_extras, needs=("target_copy",)))
    plain, rich = EmbeddedData(1, task="shapes"), _Reliance(1)
    assert "copy" not in metrics_for(plain) and "bbox" in metrics_for(plain)
    # no names: the default set's metrics the data allows (ROAD runs only when named)
    assert metrics_for(rich) == [
        m
        for m, spec in METRICS.items()
        if spec.in_default_set and set(spec.needs) <= {"target_copy"}
    ]
    assert "road_morf" not in metrics_for(rich) and "road_morf" in METRICS
    with pytest.raises(InputError, match="--metrics: copy needs target_copy.*provides: none"):
        metrics_for(plain, ["average_drop", "copy"])
    with pytest.raises(InputError, match="--metrics: unknown nope"):
        metrics_for(plain, ["nope"])
    plain.has_boxes = False
    assert "bbox" not in metrics_for(plain)


class _Triples(BenchmarkData):
    """A data source written before DataBatch: load returns (images, labels, masks)."""

    def __init__(self) -> None:
        self.images = GroundTruthShapes(2, split="test", seed=0)

    def __len__(self) -> int:
        return 2

    def load(self, indices):  # type: ignore[no-untyped-def]
        return torch.stack([self.images[i][0] for i in indices]), None, None

    def names(self, indices):  # type: ignore[no-untyped-def]
        return [str(i) for i in indices]


def test_a_data_source_returning_triples_still_runs(model: torch.nn.Module) -> None:
    result = run_benchmark(
        model, embedded_default_layer(model), _Triples(), ["gradcam"], None, progress=False
    )
    assert "bbox" not in result.metrics and "average_drop" in result.metrics
    assert [row["index"] for row in result.rows] == [0, 1]


def test_the_cluttered_task_measures_the_models_reliance_per_region() -> None:
    from captum_cams.kit.datasets import ClutteredShapes
    from captum_cams.kit.models import load_embedded_cluttered
    from captum_cams.metrics import intervention_reliance

    model = load_embedded_cluttered()
    data = EmbeddedData(3)
    assert data.provides == ("region_masks", "reliance") and metrics_for(data) == DEFAULT_METRICS
    assert metrics_for(data, list(METRICS)) == list(METRICS)  # ROAD too, when named
    batch = data.load([1, 2])
    dataset = ClutteredShapes(3, split="test", seed=0, return_annotations=True)
    for position, index in enumerate([1, 2]):
        annotation = dataset[index][2]
        assert torch.equal(batch.extras["region_masks"][position], annotation["region_masks"])
        assert torch.equal(batch.extras["interventions"][position], dataset.interventions(index))
    target = torch.tensor([0, 5])
    with torch.no_grad():
        truth = data.ground_truth(model, batch, target)
    expected = intervention_reliance(model, batch.images, batch.extras["interventions"], target)
    assert torch.equal(truth["reliance"], expected)
