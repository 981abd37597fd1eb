#!/usr/bin/env python3
import hashlib
import itertools

import pytest
import torch
from torch.utils.data import DataLoader

from captum_cams.kit.datasets import (
    CLASSES,
    NUM_CLASSES,
    NUM_PARTS,
    PART_NAMES,
    GroundTruthShapes,
    class_parts,
    counterfactual_mask,
    counterfactual_pairs,
    make_batch,
)

#: sha256 of the first four test-split images (float32 bytes) and labels of seed 0.
PINNED_TEST_DIGEST = "03c12b07b6c3cafdbd4bcddd9fa7d46e137f563648d0759077de06843adca70b"


def _items_equal(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_items_equal(a[k], b[k]) for k in a)
    if isinstance(a, (tuple, list)):
        return len(a) == len(b) and all(_items_equal(x, y) for x, y in zip(a, b))
    return a == b


def test_items_have_documented_types_and_shapes() -> None:
    data = GroundTruthShapes(4, split="test", return_annotations=True)
    image, label, annotation = data[0]
    assert image.dtype == torch.float32 and image.shape == (3, 64, 64)
    assert 0.0 <= float(image.min()) and float(image.max()) <= 1.0
    assert isinstance(label, int) and 0 <= label < NUM_CLASSES
    assert annotation["mask"].dtype == torch.bool
    assert annotation["mask"].shape == (1, 64, 64)
    assert annotation["box"].dtype == torch.float32 and annotation["box"].shape == (4,)
    assert annotation["part_masks"].shape == (NUM_PARTS, 64, 64)
    assert annotation["part_masks"].dtype == torch.bool
    assert annotation["parts_present"].shape == (NUM_PARTS,)
    assert annotation["parts_present"].dtype == torch.bool
    plain = GroundTruthShapes(4, split="test")[0]
    assert len(plain) == 2 and torch.equal(plain[0], image) and plain[1] == label


def test_image_size_scales_the_object() -> None:
    image, _, annotation = GroundTruthShapes(2, image_size=48, return_annotations=True)[1]
    assert image.shape == (3, 48, 48) and annotation["mask"].shape == (1, 48, 48)
    assert annotation["mask"].any()


def test_same_arguments_give_bit_identical_items() -> None:
    first = GroundTruthShapes(20, split="train", seed=3, return_annotations=True)
    second = GroundTruthShapes(20, split="train", seed=3, return_annotations=True)
    for index in (0, 7, 19):
        assert _items_equal(first[index], second[index])
        assert _items_equal(first[index], first[index])
    # An item does not depend on the dataset's length or on the order of access.
    longer = GroundTruthShapes(100, split="train", seed=3, return_annotations=True)
    assert _items_equal(longer[19], first[19])


def test_items_are_pinned_across_machines() -> None:
    # The generator promises the same bits on every machine; a change of these
    # hashes means a changed dataset (and a checkpoint to retrain).
    digest = hashlib.sha256()
    for index in range(4):
        image, label = GroundTruthShapes(4, split="test", seed=0)[index]
        digest.update(image.numpy().tobytes())
        digest.update(bytes([label]))
    assert digest.hexdigest() == PINNED_TEST_DIGEST


def test_splits_and_seeds_give_different_images() -> None:
    num = 40
    train = make_batch(num, split="train", seed=0).images.flatten(1)
    test = make_batch(num, split="test", seed=0).images.flatten(1)
    val = make_batch(num, split="val", seed=0).images.flatten(1)
    other_seed = make_batch(num, split="train", seed=1).images.flatten(1)
    for a, b in [(train, test), (train, val), (val, test), (train, other_seed)]:
        # No image of one appears anywhere in the other.
        assert torch.cdist(a, b).min() > 1.0


def test_labels_cover_every_class() -> None:
    labels = make_batch(300, split="train").labels
    assert set(labels.tolist()) == set(range(NUM_CLASSES))


def test_box_is_tight_around_mask_with_inclusive_end() -> None:
    from torchvision.ops import masks_to_boxes

    from captum_cams.metrics import boxes_to_masks

    data = GroundTruthShapes(30, split="val", return_annotations=True)
    for _, _, annotation in data:
        mask = annotation["mask"][0]
        x1, y1, x2, y2 = (int(v) for v in annotation["box"])
        assert annotation["box"].tolist() == [x1, y1, x2, y2]
        assert mask[y1 : y2 + 1, x1 : x2 + 1].sum() == mask.sum()
        assert mask[y1, x1 : x2 + 1].any() and mask[y2, x1 : x2 + 1].any()
        assert mask[y1 : y2 + 1, x1].any() and mask[y1 : y2 + 1, x2].any()
        # one convention across the package and torchvision
        assert torch.equal(masks_to_boxes(mask[None].float())[0], annotation["box"])
        box_mask = boxes_to_masks(annotation["box"][None], (64, 64))
        assert not (mask & ~box_mask.reshape(64, 64).bool()).any()


def test_part_masks_are_disjoint_inside_the_object_and_match_the_class() -> None:
    data = GroundTruthShapes(60, split="train", seed=5, return_annotations=True)
    for _, label, annotation in data:
        parts = annotation["part_masks"]
        assert not (parts & ~annotation["mask"]).any()
        assert int(parts.sum(dim=0).max()) <= 1
        present = annotation["parts_present"]
        assert set(present.nonzero().flatten().tolist()) == class_parts(label)
        # A present part has pixels, an absent part has none.
        assert torch.equal(parts.flatten(1).any(dim=1), present)


def test_class_tables() -> None:
    assert GroundTruthShapes.classes == CLASSES and len(CLASSES) == NUM_CLASSES
    assert GroundTruthShapes.part_names == PART_NAMES and len(PART_NAMES) == NUM_PARTS
    part_sets = [frozenset(class_parts(y)) for y in range(NUM_CLASSES)]
    assert len(set(part_sets)) == NUM_CLASSES  # every class is a distinct part set
    assert GroundTruthShapes.class_parts(4) == class_parts(4)
    assert all(
        name == "+".join(PART_NAMES[p] for p in sorted(s)) for name, s in zip(CLASSES, part_sets)
    )
    with pytest.raises(ValueError, match="label"):
        class_parts(NUM_CLASSES)


@pytest.mark.parametrize("k", [1, 2, 3])
def test_counterfactual_pairs_differ_in_exactly_k_parts(k: int) -> None:
    pairs = counterfactual_pairs(k)
    expected = [
        (a, b)
        for a, b in itertools.permutations(range(NUM_CLASSES), 2)
        if len(class_parts(a) ^ class_parts(b)) == k
    ]
    assert pairs and sorted(pairs) == sorted(expected)
    present = counterfactual_pairs(k, only_present=True)
    assert present and set(present) <= set(pairs)
    for a, b in present:
        assert class_parts(b) < class_parts(a)
        assert len(class_parts(a) - class_parts(b)) == k
    assert GroundTruthShapes.counterfactual_pairs(k) == pairs


def test_counterfactual_pairs_rejects_bad_k() -> None:
    with pytest.raises(ValueError, match="num_differing_parts"):
        counterfactual_pairs(-1)
    assert counterfactual_pairs(NUM_PARTS + 1) == []


def test_counterfactual_mask_is_the_parts_only_the_label_has() -> None:
    data = GroundTruthShapes(30, split="test", return_annotations=True)
    for _, label, annotation in data:
        for other in range(NUM_CLASSES):
            if other == label:
                continue
            mask = counterfactual_mask(annotation, label, other)
            assert mask.shape == (1, 64, 64) and mask.dtype == torch.bool
            expected = torch.zeros(64, 64, dtype=torch.bool)
            for part in class_parts(label) - class_parts(other):
                expected |= annotation["part_masks"][part]
            assert torch.equal(mask[0], expected)
            assert not (mask & ~annotation["mask"]).any()
            assert mask.any() == bool(class_parts(label) - class_parts(other))


def test_counterfactual_mask_on_a_collated_batch() -> None:
    data = GroundTruthShapes(8, split="test", return_annotations=True)
    _, labels, annotations = next(iter(DataLoader(data, batch_size=8)))
    others = (labels + 1) % NUM_CLASSES
    batched = counterfactual_mask(annotations, labels, others)
    assert batched.shape == (8, 1, 64, 64)
    for i in range(8):
        _, label, annotation = data[i]
        assert torch.equal(batched[i], counterfactual_mask(annotation, label, int(others[i])))


def test_counterfactual_mask_rejects_a_label_that_is_not_the_images() -> None:
    _, label, annotation = GroundTruthShapes(1, return_annotations=True)[0]
    wrong = next(y for y in range(NUM_CLASSES) if class_parts(y) != class_parts(label))
    with pytest.raises(ValueError, match="label"):
        counterfactual_mask(annotation, wrong, label)
    with pytest.raises(ValueError, match="other_label"):
        counterfactual_mask(annotation, label, NUM_CLASSES)


@pytest.mark.parametrize("annotations", [False, True])
def test_default_collate_works(annotations: bool) -> None:
    data = GroundTruthShapes(10, split="val", return_annotations=annotations)
    batch = next(iter(DataLoader(data, batch_size=4)))
    assert batch[0].shape == (4, 3, 64, 64) and batch[1].shape == (4,)
    if annotations:
        assert batch[2]["mask"].shape == (4, 1, 64, 64)
        assert batch[2]["box"].shape == (4, 4)
        assert batch[2]["part_masks"].shape == (4, NUM_PARTS, 64, 64)
        assert batch[2]["parts_present"].shape == (4, NUM_PARTS)


def test_worker_processes_generate_the_same_items() -> None:
    data = GroundTruthShapes(6, split="test", seed=2)
    loaded = torch.cat([x for x, _ in DataLoader(data, batch_size=2, num_workers=2)])
    assert torch.equal(loaded, torch.stack([data[i][0] for i in range(6)]))


def test_make_batch_stacks_the_dataset_items() -> None:
    images, labels, masks, boxes = make_batch(5, split="val", seed=1)
    data = GroundTruthShapes(5, split="val", seed=1, return_annotations=True)
    assert labels.dtype == torch.long and masks.dtype == torch.bool
    assert boxes.shape == (5, 4) and masks.shape == (5, 1, 64, 64)
    for i in range(5):
        image, label, annotation = data[i]
        assert torch.equal(images[i], image) and int(labels[i]) == label
        assert torch.equal(masks[i], annotation["mask"])
        assert torch.equal(boxes[i], annotation["box"])


def test_indexing_follows_sequence_rules() -> None:
    data = GroundTruthShapes(3, split="test")
    assert torch.equal(data[-1][0], data[2][0])
    assert torch.equal(data[torch.tensor(1)][0], data[1][0])
    with pytest.raises(IndexError, match="index 3"):
        data[3]
    with pytest.raises(IndexError, match="index -4"):
        data[-4]
    with pytest.raises(TypeError, match="index"):
        data[1.0]
    assert len(GroundTruthShapes(0)) == 0


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"num_samples": -1}, "num_samples"),
        ({"num_samples": 2.5}, "num_samples"),
        ({"num_samples": 4, "split": "validation"}, "split"),
        ({"num_samples": 4, "seed": -1}, "seed"),
        ({"num_samples": 4, "image_size": 16}, "image_size"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        GroundTruthShapes(**kwargs)
