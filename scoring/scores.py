"""R/F/M/E scores 1..5 from cut points, with hysteresis, and population quintile cuts."""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from scoring.config import Dimension, ScoringConfig

Cuts = tuple[Decimal, Decimal, Decimal, Decimal]
_INF = Decimal("Infinity")


def _integral(cuts: Cuts, higher_is_better: bool) -> tuple[float, ...]:
    """Cut points for integer-valued inputs, as exact small numbers that compare fast.

    ``n >= 2.5`` is ``n >= 3`` and ``n <= 30.5`` is ``n <= 30`` for integers, so rounding the
    cut towards the side that cannot change an integer comparison keeps it exact.
    """
    rounded = []
    for cut in cuts:
        if not cut.is_finite():
            rounded.append(math.inf if cut > 0 else -math.inf)
        else:
            rounded.append(float(math.ceil(cut) if higher_is_better else math.floor(cut)))
    return tuple(rounded)


@dataclass(frozen=True, slots=True)
class Thresholds:
    """The cut points in force. ``version`` grows each time quintile cuts are recomputed."""

    recency: Cuts
    frequency: Cuts
    monetary: Cuts
    engagement: Cuts
    version: int = 0

    @classmethod
    def fixed(cls, config: ScoringConfig) -> Thresholds:
        s = config.scores
        return cls(
            s.recency.thresholds,
            s.frequency.thresholds,
            s.monetary.thresholds,
            s.engagement.thresholds,
        )

    def to_dict(self) -> dict[str, object]:
        return {
            "version": self.version,
            "recency": [str(c) for c in self.recency],
            "frequency": [str(c) for c in self.frequency],
            "monetary": [str(c) for c in self.monetary],
            "engagement": [str(c) for c in self.engagement],
        }

    @classmethod
    def from_dict(cls, raw: dict[str, object]) -> Thresholds:
        def cuts(key: str) -> Cuts:
            values = raw[key]
            assert isinstance(values, list) and len(values) == 4
            a, b, c, d = (Decimal(str(v)) for v in values)
            return (a, b, c, d)

        version = raw.get("version", 0)
        assert isinstance(version, int)
        return cls(
            cuts("recency"), cuts("frequency"), cuts("monetary"), cuts("engagement"), version
        )


def raw_score(value: Decimal | int, cuts: Sequence[Decimal | float], higher_is_better: bool) -> int:
    """1 + the number of cuts the value reaches (cuts are ascending)."""
    if higher_is_better:
        return 1 + bisect_right(cuts, value)  # value >= t for the first k cuts
    return 5 - bisect_left(cuts, value)  # value <= t for the cuts from position k on


@dataclass(frozen=True, slots=True)
class Scale:
    """One dimension's cut points with hysteresis bands precomputed (scoring is hot).

    Moving to a better score needs the value to clear the cut by the margin, moving to a
    worse one needs it to fall past the cut by the margin; in between, the score stays.
    """

    cuts: tuple[Decimal | float, ...]
    higher_is_better: bool
    harder: tuple[Decimal | float, ...]
    easier: tuple[Decimal | float, ...]

    @classmethod
    def build(
        cls,
        cuts: Cuts,
        dim: Dimension,
        *,
        higher_is_better: bool,
        relative: bool = False,
        integer_input: bool = False,
    ) -> Scale:
        if not dim.hysteresis:
            fast = _integral(cuts, higher_is_better) if integer_input else cuts
            return cls(fast, higher_is_better, fast, fast)
        margins = [t * dim.hysteresis if relative else dim.hysteresis for t in cuts]
        sign = 1 if higher_is_better else -1
        harder = tuple(t + sign * mg for t, mg in zip(cuts, margins, strict=True))
        easier = tuple(t - sign * mg for t, mg in zip(cuts, margins, strict=True))
        return cls(cuts, higher_is_better, harder, easier)

    def score(self, value: Decimal | int, previous: int | None) -> int:
        if previous is None or self.harder is self.easier:
            # raw_score, inlined: this runs four times per candidate day.
            if self.higher_is_better:
                return 1 + bisect_right(self.cuts, value)
            return 5 - bisect_left(self.cuts, value)
        if self.higher_is_better:
            lowest = 1 + bisect_right(self.harder, value)
            highest = 1 + bisect_right(self.easier, value)
        else:
            lowest = 5 - bisect_left(self.harder, value)
            highest = 5 - bisect_left(self.easier, value)
        return min(max(previous, lowest), highest)


def quantile_cuts(values: Sequence[Decimal | int], *, higher_is_better: bool = True) -> Cuts:
    """Cut points that split a population into quintiles, strictly ascending.

    With ties (most customers buy once) a plain percentile would hand everyone at the tie a
    high score, so each cut is raised to the next distinct value above the previous one;
    a cut no value reaches is +Infinity, i.e. that score is not given.
    """
    if not higher_is_better:
        neg = quantile_cuts([-Decimal(v) for v in values], higher_is_better=True)
        a, b, c, d = sorted(-x for x in neg)
        return (a, b, c, d)
    xs = sorted(Decimal(v) for v in values)
    if not xs:
        return (_INF, _INF, _INF, _INF)
    n = len(xs)
    distinct = sorted(set(xs))
    cuts: list[Decimal] = []
    floor = xs[0]
    for i in range(1, 5):
        candidate = xs[min(math.ceil(i * n / 5), n - 1)]
        if candidate <= floor:
            above = distinct[bisect_right(distinct, floor) :]
            candidate = above[0] if above else _INF
        cuts.append(candidate)
        floor = candidate
    return (cuts[0], cuts[1], cuts[2], cuts[3])
