#!/usr/bin/env python3
"""The segmentation and detection recipes of docs/models_beyond_cnns.md, run as they
are printed there: a class's score summed over a region (its Grad-CAM is the sum of
Captum's Grad-CAMs of the region's pixels) and one box's score of a detector."""

from pathlib import Path
from typing import Any, Callable, Dict, List

import captum.attr as captum_attr
import torch
import torch.nn as nn
from torch import Tensor
from torchvision.ops import box_iou

import captum_cams as cc

DOC = Path(__file__).resolve().parents[2] / "docs" / "models_beyond_cnns.md"


def _recipe(name: str) -> Callable[..., Any]:
    r"""The function ``name`` as the page prints it (from its ``def`` to ``return select``)."""
    lines = DOC.read_text().splitlines()
    start = lines.index(next(line for line in lines if line.startswith(f"def {name}(")))
    end = lines.index("    return select", start)
    namespace: Dict[str, Any] = {"torch": torch, "box_iou": box_iou}
    exec("\n".join(lines[start : end + 1]), namespace)  # noqa: S102 - the page's own code
    return namespace[name]


class Segmenter(nn.Module):
    r"""``{"out": N x 3 x 4 x 4}``, as torchvision's segmentation models return."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Conv2d(3, 5, 3, padding=1, stride=2)
        self.classifier = nn.Conv2d(5, 3, 1)

    def forward(self, x: Tensor) -> Dict[str, Tensor]:
        return {"out": self.classifier(torch.relu(self.layer(x)))}


X = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


def test_region_score_is_the_sum_of_the_regions_pixel_targets() -> None:
    torch.manual_seed(0)
    segmenter = Segmenter().double().eval()
    region = torch.zeros(4, 4, dtype=torch.bool)
    region[1:3, 0:2] = True
    model = cc.OutputAdapter(segmenter, select=_recipe("region_score")(region))
    ours = cc.LayerGradCam(model, segmenter.layer).attribute(X, target=2)
    pixels = cc.OutputAdapter(segmenter, select="out")
    expected = sum(
        captum_attr.LayerGradCam(pixels, segmenter.layer).attribute(X, target=(2, h, w))
        for h, w in region.nonzero().tolist()
    )
    assert float(ours.abs().max()) > 0
    torch.testing.assert_close(ours, expected, rtol=1e-10, atol=1e-12)


class Detector(nn.Module):
    r"""Per image, a dict of two boxes, their labels and scores (sigmoid of the mean of
    a feature map over each box), as torchvision's detectors return in eval mode."""

    BOXES = torch.tensor([[0.0, 0.0, 4.0, 4.0], [2.0, 2.0, 8.0, 8.0]], dtype=torch.float64)

    def __init__(self, labels: List[int]) -> None:
        super().__init__()
        self.layer = nn.Conv2d(3, 4, 3, padding=1)
        self.labels = torch.tensor(labels)

    def forward(self, x: Tensor) -> List[Dict[str, Tensor]]:
        features = torch.relu(self.layer(x)).mean(dim=1)
        detections = []
        for image in features:
            scores = torch.stack(
                [image[int(b[1]) : int(b[3]), int(b[0]) : int(b[2])].mean() for b in self.BOXES]
            ).sigmoid()
            detections.append({"boxes": self.BOXES, "labels": self.labels, "scores": scores})
        return detections


class SecondBoxScore(nn.Module):
    def __init__(self, detector: Detector) -> None:
        super().__init__()
        self.detector = detector

    def forward(self, x: Tensor) -> Tensor:
        return torch.stack([found["scores"][1] for found in self.detector(x)])[:, None]


def test_box_score_matches_the_box_by_overlap_and_class() -> None:
    torch.manual_seed(0)
    detector = Detector(labels=[5, 7]).double().eval()
    box_score = _recipe("box_score")
    shifted = torch.tensor([2.5, 2.0, 8.0, 8.0], dtype=torch.float64)  # IoU 0.92 with box 1
    model = cc.OutputAdapter(detector, select=box_score(shifted, 7))
    with torch.no_grad():
        scores = model(X)
        expected_scores = SecondBoxScore(detector)(X)
    torch.testing.assert_close(scores, expected_scores)
    ours = cc.LayerGradCam(model, detector.layer).attribute(X, target=0)
    expected = cc.LayerGradCam(SecondBoxScore(detector), detector.layer).attribute(X, target=0)
    assert float(ours.abs().max()) > 0
    torch.testing.assert_close(ours, expected)
    # another class, or no overlap: score 0, still a tensor of the graph
    for box, label in ((shifted, 5), (torch.tensor([0.0, 6.0, 1.0, 8.0]).double(), 7)):
        none = cc.OutputAdapter(detector, select=box_score(box, label))(X)
        assert torch.equal(none, torch.zeros(2, 1, dtype=torch.float64))
