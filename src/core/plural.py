"""Counts in messages: "1 invalid line", "2 invalid lines", "0 tasks"."""

from __future__ import annotations


def counted(count: int, noun: str, plural: str | None = None) -> str:
    """`count` and `noun`, the noun in the plural unless the count is one (`plural`, else
    `noun` + "s")."""
    return f"{count} {noun if count == 1 else (plural or noun + 's')}"
