"""What every document reader shares: the capped warnings list and lenient pixel sizes."""
from __future__ import annotations

import math
import re
from typing import Any, Optional

# A manifest with thousands of canvases can repeat one oddity thousands of times.
MAX_WARNINGS = 200


_DIGITS = re.compile(r"[0-9]{1,12}")


class ParseWarnings:
    """Collects non-fatal problems, capped so one bad field repeated per canvas stays readable."""

    def __init__(self) -> None:
        self.messages: list[str] = []
        self.suppressed = 0
        self.tallies: dict[str, int] = {}

    def __call__(self, message: str) -> None:
        if len(self.messages) < MAX_WARNINGS:
            self.messages.append(message)
        else:
            self.suppressed += 1

    def tally(self, message: str) -> None:
        """Count a benign oddity that some publishers repeat on every canvas; reported once."""
        self.tallies[message] = self.tallies.get(message, 0) + 1

    def finish(self) -> list[str]:
        summary = [f"{message} ({count}x)" for message, count in self.tallies.items()]
        if self.suppressed:
            summary.append(f"... and {self.suppressed} more warnings")
        return self.messages + summary


def pixel_count(value: Any) -> Optional[int]:
    """A size in pixels as publishers write it: an int, a whole float or a string of ASCII digits,
    when it is > 0; None for anything else (booleans, "²", "12.5", 10**30 written out)."""
    if isinstance(value, bool):
        return None
    number: Optional[int] = None
    if isinstance(value, int):
        number = value
    elif isinstance(value, float) and math.isfinite(value) and value.is_integer():
        number = int(value)
    elif isinstance(value, str) and _DIGITS.fullmatch(value.strip()):
        number = int(value.strip())
    return number if number is not None and number > 0 else None


def positive_int(value: Any, warn: ParseWarnings, where: str) -> Optional[int]:
    """:func:`pixel_count`, with a warning for a value that is not one (a digit string is
    accepted and tallied: some publishers write every size that way)."""
    if value is None:
        return None
    number = pixel_count(value)
    if number is None:
        warn(f"{where} is {value!r}, not a positive integer; treated as unknown")
    elif isinstance(value, str):
        warn.tally("pixel sizes given as strings of digits")
    return number
