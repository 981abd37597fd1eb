#!/usr/bin/env python3
"""Wording of printed counts, shared by the command line, the report and the figures."""

from typing import Optional

__all__ = ["count_of"]


def count_of(number: int, noun: str, plural: Optional[str] = None) -> str:
    r"""
    A count and its noun, singular for one: ``"1 image"``, ``"3 images"``.

    Args:
        number (int): the count.
        noun (str): the singular noun.
        plural (str, optional): the plural where it is not ``noun + "s"``.
                    Default: None.

    Returns:
        *str*: ``"<number> <noun>"``.

    Examples::

        >>> count_of(1, "image"), count_of(0, "image"), count_of(2, "class", "classes")
        ('1 image', '0 images', '2 classes')
    """
    return f"{number} {noun if number == 1 else (plural or noun + 's')}"
