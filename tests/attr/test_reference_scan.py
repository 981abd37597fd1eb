#!/usr/bin/env python3
"""The reference library's dataset scan: which inputs qualify for which classes, and the
activations stored for them, against a hand forward pass in float64."""

from typing import Any, Dict, List, Optional, Tuple

import pytest
import torch
import torch.nn as nn
from torch import Tensor
from torch.utils.data import DataLoader, TensorDataset

from captum_cams.attr._reference_scan import scan_references

NUM_CLASSES = 3


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3, padding=1)
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(3, NUM_CLASSES)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.pool(self.relu(self.conv(x))).flatten(1))


def _net() -> _Net:
    torch.manual_seed(0)
    net = _Net().double()
    with torch.no_grad():
        net.fc.weight.mul_(4.0)  # spread the probabilities over (0, 1)
    return net.eval()


def _data() -> Tuple[Tensor, Tensor]:
    generator = torch.Generator().manual_seed(2)
    images = torch.randn(8, 2, 5, 5, generator=generator, dtype=torch.float64)
    labels = torch.randint(0, NUM_CLASSES, (8,), generator=generator)
    return images, labels


def _scan(net: nn.Module, loader: Any, **options: Any) -> List:
    settings: Dict[str, Any] = dict(
        num_classes=NUM_CLASSES, tau=0.3, max_per_class=2, min_confidence=None,
        dtype=torch.float64, device=None, additional_forward_args=None,
        attribute_to_layer_input=False, progress=False, reshape_transform=None,
    )  # fmt: skip
    settings.update(options)
    return scan_references(net, net.relu, loader, **settings)


def _by_hand(
    net: _Net, images: Tensor, labels: Tensor, tau: float, max_per_class: int,
    min_confidence: Optional[float] = None,
) -> List:  # fmt: skip
    with torch.no_grad():
        activations = torch.relu(net.conv(images))
        probabilities = torch.softmax(net(images).float(), dim=1)
    counts = [0] * NUM_CLASSES
    expected = []
    for row in range(images.shape[0]):
        if min_confidence is not None:
            top, predicted = probabilities[row].max(dim=0)
            if int(predicted) != int(labels[row]) or float(top) < min_confidence:
                continue
        classes = []
        for c in range(NUM_CLASSES):
            if float(probabilities[row, c]) < tau and counts[c] < max_per_class:
                classes.append(c)
                counts[c] += 1
        if classes:
            expected.append((row, activations[row], classes))
    return expected


def _check(found: List, expected: List) -> None:
    assert [position for position, _ in found] == [row for row, _, _ in expected]
    for (_, (activation, classes)), (_, hand, hand_classes) in zip(found, expected):
        assert classes == hand_classes
        assert activation.dtype == torch.float64 and activation.device.type == "cpu"
        torch.testing.assert_close(activation, hand, rtol=1e-12, atol=1e-14)  # batch sizes differ


@pytest.mark.parametrize("tau, max_per_class", [(0.3, 2), (0.5, 1), (1.0, 8)])
def test_the_qualifying_inputs_and_their_activations_equal_a_hand_forward(
    tau: float, max_per_class: int
) -> None:
    net = _net()
    images, labels = _data()
    loader = DataLoader(TensorDataset(images, labels), batch_size=3)
    expected = _by_hand(net, images, labels, tau, max_per_class)
    assert expected  # the setting selects something
    _check(_scan(net, loader, tau=tau, max_per_class=max_per_class), expected)


def test_min_confidence_keeps_only_confidently_correct_inputs() -> None:
    net = _net()
    images, labels = _data()
    loader = DataLoader(TensorDataset(images, labels), batch_size=3)
    unfiltered = _by_hand(net, images, labels, 0.5, 8)
    expected = _by_hand(net, images, labels, 0.5, 8, min_confidence=0.4)
    assert 0 < len(expected) < len(unfiltered)  # the filter decides something here
    _check(_scan(net, loader, tau=0.5, max_per_class=8, min_confidence=0.4), expected)


class _Recording(list):
    """A list of batches that records how many were read."""

    read = 0

    def __iter__(self) -> Any:
        for batch in super().__iter__():
            self.read += 1
            yield batch


def test_the_scan_stops_once_every_class_is_full() -> None:
    net = _net()
    images, labels = _data()
    batches = _Recording((images[i : i + 1], labels[i : i + 1]) for i in range(8))
    found = _scan(net, batches, tau=1.0, max_per_class=1)  # every input qualifies
    assert [position for position, _ in found] == [0]
    assert found[0][1][1] == [0, 1, 2] and batches.read == 1


def test_bad_batches_and_class_counts_are_refused() -> None:
    net = _net()
    images, labels = _data()
    with pytest.raises(ValueError, match="batch 0 is a Tensor"):
        _scan(net, [images])
    with pytest.raises(ValueError, match="num_classes is 4 but the model returns 3"):
        _scan(net, [(images, labels)], num_classes=4)
    assert not net.training  # the model's mode is left as it was
