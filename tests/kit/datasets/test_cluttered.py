#!/usr/bin/env python3
import pytest
import torch

from captum_cams.kit.datasets.cluttered import (
    CLUTTERED_CLASS_PARTS,
    MAX_DISTRACTORS,
    NUISANCE_PART,
    NUM_REGIONS,
    REGION_NAMES,
    ClutteredShapes,
)


@pytest.fixture(scope="module")
def items():
    data = ClutteredShapes(40, split="test", seed=0, return_annotations=True)
    return data, [data[i] for i in range(len(data))]


def test_items_are_reproducible_and_splits_differ(items) -> None:
    data, cached = items
    again = ClutteredShapes(40, split="test", seed=0)
    for i in (0, 7, 39):
        assert torch.equal(again[i][0], cached[i][0])
    train = ClutteredShapes(40, split="train", seed=0)
    assert not torch.equal(train[0][0], cached[0][0])
    image, label = again[3]
    assert image.shape == (3, 64, 64) and image.dtype == torch.float32
    assert 0.0 <= float(image.min()) and float(image.max()) <= 1.0


def test_the_class_is_the_class_parts_and_the_nuisance_part_is_random(items) -> None:
    _, cached = items
    with_spot = 0
    for _, label, annotation in cached:
        drawn = set(torch.nonzero(annotation["part_masks"].flatten(1).any(1)).flatten().tolist())
        assert drawn - {NUISANCE_PART} <= set(CLUTTERED_CLASS_PARTS[label])
        with_spot += NUISANCE_PART in drawn
    assert 5 < with_spot < 35  # drawn on about half the objects, whatever their class


def test_region_masks_are_disjoint_and_cover_only_drawn_pixels(items) -> None:
    _, cached = items
    for _, _, annotation in cached:
        regions = annotation["region_masks"]
        assert regions.shape == (NUM_REGIONS, 64, 64) and regions.dtype == torch.bool
        assert int(regions.sum(0).max()) <= 1
        present = annotation["regions_present"]
        assert torch.equal(present, regions.flatten(1).any(1))
        assert 3 <= int(present[len(REGION_NAMES) - MAX_DISTRACTORS :].sum()) <= MAX_DISTRACTORS
        assert torch.equal(annotation["part_masks"], regions[:4])
        assert not (regions[:4] & ~annotation["mask"]).any()


def test_an_intervention_changes_exactly_its_region(items) -> None:
    data, cached = items
    changed_somewhere = 0
    for index in range(12):
        image, _, annotation = cached[index]
        without = data.interventions(index)
        assert without.shape == (NUM_REGIONS, 3, 64, 64)
        for slot in range(NUM_REGIONS):
            differs = (without[slot] != image).any(0)
            region = annotation["region_masks"][slot]
            assert not (differs & ~region).any(), (index, REGION_NAMES[slot])
            if not annotation["regions_present"][slot]:
                assert torch.equal(without[slot], image)
            changed_somewhere += bool(differs.any())
    assert (
        changed_somewhere >= sum(int(cached[i][2]["regions_present"].sum()) for i in range(12)) - 2
    )


def test_bad_arguments_name_themselves() -> None:
    with pytest.raises(ValueError, match="num_samples"):
        ClutteredShapes(-1)
    with pytest.raises(ValueError, match="split"):
        ClutteredShapes(3, split="dev")
    with pytest.raises(IndexError, match="out of range"):
        ClutteredShapes(3)[3]
    with pytest.raises(ValueError, match="slots"):
        ClutteredShapes(3).interventions(0, slots=[NUM_REGIONS])
