"""The part of a document that a script writes: the lines between a BEGIN and an END marker."""

from __future__ import annotations

from pathlib import Path


def replace_generated(path: Path, begin: str, end: str, lines: list[str]) -> str:
    """`path`'s text with the lines between `begin` and `end` replaced by `lines` (the markers stay)."""
    text = path.read_text()
    head, found, rest = text.partition(begin)
    _, found_end, tail = rest.partition(end)
    if not (found and found_end):
        raise SystemExit(f"{path}: the markers {begin!r} and {end!r} are missing")
    return head + "\n".join([begin, *lines, end]) + tail
