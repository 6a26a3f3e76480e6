"""Calibration/holdout check of the lifetime value model on CDNOW (docs/clv.md).

The bundled CDNOW history is replayed up to the end of its first 39 weeks (calibration),
the models are fitted on those states exactly as ``tierstream clv fit`` does, and each
customer's expected purchase days over the remaining weeks (holdout) are compared with
the purchase days they actually had there, per group of customers (by their repeat
purchase days in calibration) and in total. ``python -m tierstream.clv_validation
[PNG]`` prints the table (Markdown) and draws the plot.
"""

from __future__ import annotations

import sys
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from scoring.clv import clv_features, expected_purchases
from scoring.days import utc_day
from scoring.engine import Scorer
from tierstream.clv import ClvSnapshot, features_of, fit
from tierstream.readers import bundled_cdnow_path, read_events
from tierstream.replay import ReplayStats, collect, replay
from tierstream.settings import load_scoring_config

START = date(1997, 1, 1)
CALIBRATION_WEEKS = 39
HOLDOUT_END = date(1998, 6, 30)  # the last day of the history
TOP_GROUP = 7  # customers with 7 or more repeat purchase days form one group


@dataclass(frozen=True)
class GroupResult:
    group: str
    customers: int
    predicted: float
    actual: int


@dataclass(frozen=True)
class Validation:
    calibration_end: date
    holdout_days: int
    snapshot: ClvSnapshot
    groups: list[GroupResult]

    @property
    def predicted(self) -> float:
        return sum(g.predicted for g in self.groups)

    @property
    def actual(self) -> int:
        return sum(g.actual for g in self.groups)


def validate() -> Validation:
    events = collect(read_events(bundled_cdnow_path(), "cdnow"), ReplayStats(), strict=False)
    calibration_end = START + timedelta(weeks=CALIBRATION_WEEKS) - timedelta(days=1)
    cut = datetime(calibration_end.year, calibration_end.month, calibration_end.day, tzinfo=UTC)
    day = utc_day(cut)
    holdout_days = (HOLDOUT_END - calibration_end).days
    calibration = [e for e in events if utc_day(e.occurred_at) <= day]
    config = load_scoring_config(None)
    result = replay(
        calibration, Scorer(config), as_of=cut, emit=lambda c: None, stats=ReplayStats()
    )
    snapshot = fit(features_of(result.states.values(), day), config.clv, cut)
    # Actual purchase days in the holdout, straight from the events.
    holdout_days_of: dict[str, set[int]] = {}
    for event in events:
        d = utc_day(event.occurred_at)
        if day < d <= day + holdout_days:
            holdout_days_of.setdefault(event.customer_id, set()).add(d)
    predicted: dict[str, float] = {}
    actual: Counter[str] = Counter()
    customers: Counter[str] = Counter()
    for state in result.states.values():
        features = clv_features(state, day)
        if features is None:
            continue
        x = features.repeat
        group = str(x) if x < TOP_GROUP else f"{TOP_GROUP}+"
        customers[group] += 1
        predicted[group] = predicted.get(group, 0.0) + expected_purchases(
            snapshot.bgnbd, float(holdout_days), x, float(features.recency), float(features.age)
        )
        actual[group] += len(holdout_days_of.get(state.customer_id, ()))
    order = [str(x) for x in range(TOP_GROUP)] + [f"{TOP_GROUP}+"]
    groups = [GroupResult(g, customers[g], predicted[g], actual[g]) for g in order if customers[g]]
    return Validation(calibration_end, holdout_days, snapshot, groups)


def markdown(v: Validation) -> str:
    lines = [
        "| repeat purchase days in calibration | customers | predicted purchase days "
        "in holdout | actual | predicted / actual |",
        "|---|---|---|---|---|",
    ]
    for g in v.groups:
        ratio = g.predicted / g.actual if g.actual else float("nan")
        lines.append(
            f"| {g.group} | {g.customers:,} | {g.predicted:,.0f} | {g.actual:,} | {ratio:.2f} |"
        )
    lines.append(
        f"| **all** | {sum(g.customers for g in v.groups):,} | {v.predicted:,.0f} | "
        f"{v.actual:,} | {v.predicted / v.actual:.3f} |"
    )
    return "\n".join(lines)


def plot(v: Validation, path: Path) -> None:
    import matplotlib as mpl  # noqa: PLC0415

    mpl.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    names = [g.group for g in v.groups]
    xs = range(len(names))
    per = [g.predicted / g.customers for g in v.groups]
    real = [g.actual / g.customers for g in v.groups]
    left.plot(list(xs), real, "o-", label="actual")
    left.plot(list(xs), per, "s--", label="predicted (BG/NBD)")
    left.set_xticks(list(xs))
    left.set_xticklabels(names)
    left.set_xlabel("repeat purchase days in the first 39 weeks")
    left.set_ylabel("mean purchase days in the next 39 weeks")
    left.legend()
    left.set_title("Per customer, by calibration frequency")
    width = 0.4
    right.bar([i - width / 2 for i in xs], [g.actual for g in v.groups], width, label="actual")
    right.bar(
        [i + width / 2 for i in xs], [g.predicted for g in v.groups], width, label="predicted"
    )
    right.set_xticks(list(xs))
    right.set_xticklabels(names)
    right.set_xlabel("repeat purchase days in the first 39 weeks")
    right.set_ylabel("purchase days in the holdout (group total)")
    right.set_title(
        f"Total: predicted {v.predicted:,.0f}, actual {v.actual:,} "
        f"({v.predicted / v.actual - 1:+.1%})"
    )
    right.legend()
    fig.suptitle(f"CDNOW: fit on 1997-01-01..{v.calibration_end}, holdout {v.holdout_days} days")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv: list[str]) -> int:
    result = validate()
    b, g = result.snapshot.bgnbd, result.snapshot.gamma_gamma
    print(f"BG/NBD r={b.r:.4f} alpha={b.alpha:.4f} a={b.a:.4f} b={b.b:.4f} (days)")
    print(f"Gamma-Gamma p={g.p:.4f} q={g.q:.4f} v={g.v:.4f}")
    print(markdown(result))
    if argv:
        plot(result, Path(argv[0]))
        print(f"wrote {argv[0]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
