"""How numbers read on every page: one format per kind of number, and a dash for what is not known.

Accuracies and other shares of images get two decimals ("87.44%"), so values side by side compare
at the same precision; class probabilities get one ("61.3%"); a difference is in points ("+0.19 pts").
"""

from __future__ import annotations

import math

MISSING = "—"


def _known(x: float | None) -> bool:
    return x is not None and not (isinstance(x, float) and not math.isfinite(x))


def percent(x: float | None, digits: int = 2) -> str:
    """A fraction as a percentage: 0.8744 → "87.44%"; None or NaN → "—"."""
    return f"{x:.{digits}%}" if _known(x) else MISSING


def probability(p: float | None) -> str:
    """A class probability: 0.6134 → "61.3%"."""
    return percent(p, 1)


def points(delta: float | None) -> str:
    """A difference of two fractions in percentage points: 0.0019 → "+0.19 pts"."""
    return f"{delta * 100:+.2f} pts" if _known(delta) else MISSING


def duration(seconds: float | None) -> str:
    """"1 h 02 min", "12 min 05 s", "48 s"; "—" when unknown."""
    if not _known(seconds):
        return MISSING
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600} h {s % 3600 // 60:02d} min"
    if s >= 60:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s} s"
