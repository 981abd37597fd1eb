#!/usr/bin/env python3
"""The main job's model on its task: accurate, not saturated, and provably blind to the
part that never decides the class (measured by intervention)."""

import os

import pytest
import torch

from captum_cams.kit.datasets import ClutteredShapes
from captum_cams.kit.datasets.cluttered import NUISANCE_PART
from captum_cams.kit.models import (
    EMBEDDED_CLUTTERED_CHECKPOINT,
    embedded_default_layer,
    load_embedded_cluttered,
)
from captum_cams.metrics import intervention_reliance

NUM_IMAGES = 200


@pytest.fixture(scope="module")
def measured():
    model = load_embedded_cluttered()
    data = ClutteredShapes(NUM_IMAGES, split="test", seed=0, return_annotations=True)
    items = [data[i] for i in range(NUM_IMAGES)]
    images = torch.stack([item[0] for item in items])
    labels = torch.tensor([item[1] for item in items])
    present = torch.stack([item[2]["regions_present"] for item in items])
    with torch.no_grad():
        probabilities = torch.softmax(model(images), dim=1)
    intervened = torch.stack([data.interventions(i, slots=range(4)) for i in range(NUM_IMAGES)])
    reliance = intervention_reliance(model, images, intervened, labels, max_examples_per_batch=400)
    return model, labels, probabilities, present, reliance


def test_checkpoint_is_small_and_records_its_training() -> None:
    assert os.path.getsize(EMBEDDED_CLUTTERED_CHECKPOINT) < 5 * 2**20
    meta = torch.load(EMBEDDED_CLUTTERED_CHECKPOINT, weights_only=True)["meta"]
    assert meta["task"] == "cluttered" and meta["num_classes"] == len(ClutteredShapes.classes)
    assert meta["label_smoothing"] > 0 and meta["cam_block"] == -2


def test_accurate_but_not_saturated(measured) -> None:
    _, labels, probabilities, _, _ = measured
    accuracy = (probabilities.argmax(1) == labels).double().mean()
    assert accuracy >= 0.9
    median = probabilities[torch.arange(NUM_IMAGES), labels].median()
    assert 0.5 <= float(median) <= 0.95


def test_the_nuisance_part_is_ignored_and_the_class_parts_are_not(measured) -> None:
    _, _, _, present, reliance = measured
    spot = reliance[present[:, NUISANCE_PART], NUISANCE_PART]
    assert spot.numel() > 50
    parts = [reliance[present[:, p], p] for p in range(3)]
    weakest_part = min(float(values.mean()) for values in parts)
    assert weakest_part > 0.3  # removing a class part costs the model a lot
    # the spot: about 0 on average, and far below any class part
    assert abs(float(spot.mean())) < 0.03 < weakest_part / 10


def test_the_cam_layer_leaves_a_non_linear_head(measured) -> None:
    model = measured[0]
    layer = embedded_default_layer(model)
    assert layer is model.features[-2]
    assert not model.training
