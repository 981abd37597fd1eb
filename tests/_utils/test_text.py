#!/usr/bin/env python3
"""Printed counts: singular for one, plural otherwise."""

from captum_cams._utils.text import count_of


def test_count_of() -> None:
    assert count_of(1, "image") == "1 image"
    assert count_of(0, "image") == "0 images"
    assert count_of(48, "image") == "48 images"
    assert count_of(1, "class", "classes") == "1 class"
    assert count_of(2, "class", "classes") == "2 classes"
