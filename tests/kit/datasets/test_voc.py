#!/usr/bin/env python3
"""Pascal-VOC XML reading: boxes, sizes, coordinate conversion, refusal of DTDs/entities."""

import pytest

from captum_cams.kit.datasets.voc import (
    read_voc_boxes,
    read_voc_size,
    voc_boxes_to_tensor,
    voc_ground_truth_mask,
)

ANNOTATION = """<annotation>
  <folder>VOC2012</folder>
  <filename>2007_000027.jpg</filename>
  <size><width>6</width><height>4</height><depth>3</depth></size>
  <object>
    <name>person</name><difficult>0</difficult>
    <bndbox><xmin>1</xmin><ymin>2</ymin><xmax>3</xmax><ymax>4</ymax></bndbox>
  </object>
  <object>
    <name>dog</name><difficult>1</difficult>
    <bndbox><xmin>5.5</xmin><ymin>1</ymin><xmax>6</xmax><ymax>1</ymax></bndbox>
  </object>
</annotation>
"""


@pytest.fixture
def annotation(tmp_path):
    path = tmp_path / "a.xml"
    path.write_text(ANNOTATION)
    return path


def test_read_boxes_and_size(annotation):
    assert read_voc_boxes(annotation) == [
        ("person", (1.0, 2.0, 3.0, 4.0)),
        ("dog", (5.5, 1.0, 6.0, 1.0)),
    ]
    assert read_voc_boxes(str(annotation), include_difficult=False) == [
        ("person", (1.0, 2.0, 3.0, 4.0))
    ]
    assert read_voc_size(annotation) == (4, 6)


def test_tensor_and_mask(annotation):
    boxes = read_voc_boxes(annotation)
    assert voc_boxes_to_tensor(boxes).tolist() == [[0.0, 1.0, 2.0, 3.0], [4.5, 0.0, 5.0, 0.0]]
    assert voc_boxes_to_tensor(boxes, labels=["cat"]).shape == (0, 4)
    mask = voc_ground_truth_mask(annotation)
    assert mask.shape == (1, 4, 6)
    assert mask[0].int().tolist() == [
        [0, 0, 0, 0, 0, 1],
        [1, 1, 1, 0, 0, 0],
        [1, 1, 1, 0, 0, 0],
        [1, 1, 1, 0, 0, 0],
    ]
    person = voc_ground_truth_mask(annotation, labels=["person"])
    assert int(person.sum()) == 9


def test_refuses_entities_and_dtd(tmp_path):
    bomb = tmp_path / "bomb.xml"
    bomb.write_text(
        '<?xml version="1.0"?>\n<!DOCTYPE annotation [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;">]>\n'
        "<annotation><object><name>&b;</name></object></annotation>"
    )
    with pytest.raises(ValueError, match="DTD or entity"):
        read_voc_boxes(bomb)
    external = tmp_path / "ext.xml"
    external.write_text(
        '<?xml version="1.0"?>\n<!DOCTYPE annotation SYSTEM "http://example.invalid/a.dtd">\n'
        "<annotation/>"
    )
    with pytest.raises(ValueError, match="DTD or entity"):
        read_voc_size(external)


def test_malformed(tmp_path):
    broken = tmp_path / "broken.xml"
    broken.write_text("<annotation><object>")
    with pytest.raises(ValueError, match="not well-formed"):
        read_voc_boxes(broken)
    nobox = tmp_path / "nobox.xml"
    nobox.write_text("<annotation><object><name>cat</name></object></annotation>")
    with pytest.raises(ValueError, match="no bndbox"):
        read_voc_boxes(nobox)
    badnum = tmp_path / "badnum.xml"
    badnum.write_text(
        "<annotation><object><name>cat</name><bndbox><xmin>a</xmin><ymin>1</ymin>"
        "<xmax>2</xmax><ymax>2</ymax></bndbox></object></annotation>"
    )
    with pytest.raises(ValueError, match="xmin is not a number"):
        read_voc_boxes(badnum)
    outside = tmp_path / "outside.xml"
    outside.write_text(
        "<annotation><size><width>2</width><height>2</height></size><object><name>cat</name>"
        "<bndbox><xmin>1</xmin><ymin>1</ymin><xmax>3</xmax><ymax>2</ymax></bndbox></object></annotation>"
    )
    with pytest.raises(ValueError, match="outside"):
        voc_ground_truth_mask(outside)


@pytest.mark.parametrize("height, width", [(60000, 60000), (1, 10**9), (9460, 9460)])
def test_masks_of_declared_sizes_over_the_limit_are_refused_before_allocation(
    tmp_path, monkeypatch, height, width
):
    import captum_cams.kit.datasets.voc as voc

    def no_allocation(*args, **kwargs):
        raise AssertionError("a mask was allocated before the size was checked")

    monkeypatch.setattr(voc, "boxes_to_masks", no_allocation)
    path = tmp_path / "big.xml"
    path.write_text(
        f"<annotation><size><width>{width}</width><height>{height}</height></size>"
        "<object><name>dog</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>2</xmax>"
        "<ymax>2</ymax></bndbox></object></annotation>"
    )
    with pytest.raises(
        ValueError, match=rf"big\.xml: declares a {height}x{width} image .*max_pixels"
    ):
        voc_ground_truth_mask(path)
    with pytest.raises(ValueError, match="over the limit of 10 pixels"):
        voc_ground_truth_mask(path, max_pixels=10)
