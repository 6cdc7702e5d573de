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


def positive_int(value: Any, warn: ParseWarnings, where: str) -> Optional[int]:
    """A pixel size: ints, whole floats and digit strings (with a warning) that are > 0."""
    if value is None:
        return None
    number: Optional[int] = None
    if isinstance(value, bool):
        number = None
    elif isinstance(value, int):
        number = value
    elif isinstance(value, float) and math.isfinite(value) and value.is_integer():
        number = int(value)
    elif isinstance(value, str) and _DIGITS.fullmatch(value.strip()):
        number = int(value.strip())
        warn.tally("pixel sizes given as strings of digits")
    if number is None or number <= 0:
        warn(f"{where} is {value!r}, not a positive integer; treated as unknown")
        return None
    return number
