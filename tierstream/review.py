"""The segment review: are the RFM and behaviour segments still worth their place?

``tierstream review`` takes the KPIs of every segment now, compares them with the last
review (sizes, revenue, retention, lifetime value), counts the moves in and out since
then, and suggests merging (too small, or too close to another), splitting (too spread)
or retiring (empty or shrinking) segments, with the thresholds of the config's
``review:`` section. Each review is kept (in the store's metadata, or a JSON file) so that
the next one compares with it. docs/kpis.md, "The segment review", has the rules.
"""

from __future__ import annotations

import json
import math
import statistics
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from rich.console import Console
from rich.table import Table

from scoring.config import ReviewSettings
from scoring.days import day_to_date, utc_day
from scoring.engine import Change, Scorer
from scoring.kpis import CustomerKpis
from scoring.state import CustomerState
from tierstream.kpis import kpi_table, population

REVIEWS_META = "segment_reviews"
KEEP = 50  # reviews kept in the history (oldest dropped first)
REVIEWED = ("segment", "behaviour")  # the dimensions a review covers
KEPT_TALLIES = tuple(f"flow:{by}:" for by in REVIEWED)  # the next review's baseline


class HistoryError(ValueError):
    """A review history that cannot be read."""


class History(Protocol):
    def load(self) -> list[dict[str, Any]]: ...

    def append(self, review: dict[str, Any]) -> None: ...


def _parse(raw: bytes | str, where: str) -> list[dict[str, Any]]:
    try:
        reviews = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise HistoryError(f"the review history in {where} is not JSON: {exc}") from None
    if not isinstance(reviews, list) or not all(
        isinstance(r, dict) and isinstance(r.get("as_of"), str) for r in reviews
    ):
        raise HistoryError(f"the review history in {where} is not a list of reviews")
    return reviews


class StoreHistory:
    """Reviews in the store's metadata (``ns:meta:segment_reviews``), newest last."""

    def __init__(self, store: Any) -> None:
        self.store = store

    def load(self) -> list[dict[str, Any]]:
        raw = self.store.get_meta(REVIEWS_META)
        return _parse(raw, "the store") if raw else []

    def append(self, review: dict[str, Any]) -> None:
        reviews = [*self.load(), _kept(review)][-KEEP:]
        self.store.set_meta(REVIEWS_META, json.dumps(reviews, separators=(",", ":")).encode())


class FileHistory:
    """Reviews in a JSON file, newest last."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> list[dict[str, Any]]:
        try:
            raw = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        except (OSError, UnicodeDecodeError) as exc:
            raise HistoryError(f"cannot read the review history {self.path}: {exc}") from None
        return _parse(raw, str(self.path))

    def append(self, review: dict[str, Any]) -> None:
        reviews = [*self.load(), _kept(review)][-KEEP:]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(reviews, indent=1) + "\n", encoding="utf-8")


def _kept(review: dict[str, Any]) -> dict[str, Any]:
    return review  # the whole review: a few kB, no per-customer data


def pick_previous(
    reviews: Sequence[dict[str, Any]], since: datetime | None
) -> dict[str, Any] | None:
    """The review to compare with: the latest, or the latest as of ``since`` or earlier."""
    if since is None:
        return reviews[-1] if reviews else None
    day = day_to_date(utc_day(since)).isoformat()
    eligible = [r for r in reviews if r["as_of"] <= day]
    return eligible[-1] if eligible else None


def make_review(
    scorer: Scorer,
    states: Iterable[CustomerState],
    as_of: datetime,
    *,
    previous: dict[str, Any] | None,
    behaviours: Any = None,
    clv: Any = None,
    tallies: dict[str, int] | None = None,
    changes: Sequence[Change] | None = None,
    made_at: datetime | None = None,
) -> dict[str, Any]:
    """The review as a JSON-ready dict (what is printed, written and kept)."""
    people = population(scorer, list(states), as_of, behaviours=behaviours, clv=clv)
    settings = scorer.config.review
    since_day = previous["as_of"] if previous is not None else None
    dimensions = {}
    for by in REVIEWED:
        table = kpi_table(scorer, people, by)
        earlier = previous["dimensions"].get(by) if previous is not None else None
        flows, source = _flows(by, since_day, as_of, tallies, previous, changes)
        groups = _groups(table["groups"], people.customers, by, earlier, flows)
        dimensions[by] = {
            "groups": groups,
            "flows_source": source,
            "suggestions": suggest(groups, settings, first=earlier is None),
        }
    return {
        "review_id": (previous.get("review_id", 0) if previous is not None else 0) + 1,
        "made_at": (made_at or datetime.now(UTC)).isoformat(),
        "as_of": day_to_date(utc_day(as_of)).isoformat(),
        "period_days": people.period_days,
        "first": previous is None,
        "compared_with": None
        if previous is None
        else {"review_id": previous.get("review_id"), "as_of": previous["as_of"]},
        "customers": len(people.customers),
        "segment_model_version": table["segment_model_version"],
        "clv_model_version": table["clv_model_version"],
        "tallies": {k: v for k, v in (tallies or {}).items() if k.startswith(KEPT_TALLIES)},
        "dimensions": dimensions,
    }


def _groups(
    rows: list[dict[str, Any]],
    customers: list[CustomerKpis],
    by: str,
    earlier: dict[str, Any] | None,
    flows: dict[str, dict[str, int]] | None,
) -> list[dict[str, Any]]:
    revenues: dict[str, list[float]] = {}
    for customer in customers:
        name = customer.groups.get(by)
        if name is not None:
            revenues.setdefault(name, []).append(float(customer.revenue))
    before = {g["group"]: g for g in (earlier or {}).get("groups", [])}
    names = [row["group"] for row in rows] + sorted(set(before) - {row["group"] for row in rows})
    by_name = {row["group"]: row for row in rows}
    out = []
    for name in names:
        row = by_name.get(name) or {"group": name, "customers": 0, "revenue": "0"}
        values = revenues.get(name, [])
        mean = sum(values) / len(values) if values else 0.0
        spread = statistics.pstdev(values) / mean if len(values) > 1 and mean > 0 else None
        group = {
            "group": name,
            "customers": row["customers"],
            "customer_share": row.get("customer_share", 0.0),
            "revenue": row["revenue"],
            "revenue_per_customer": round(mean, 2),
            "revenue_spread": None if spread is None else round(spread, 4),
            "retention": row.get("retention"),
            "churn_rate": row.get("churn_rate"),
            "mean_clv_12m": row.get("mean_clv_12m"),
        }
        old = before.get(name)
        group["trend"] = None if old is None and earlier is None else _trend(group, old)
        group["flows"] = None if flows is None else flows.get(name, {"in": 0, "out": 0})
        out.append(group)
    return out


def _trend(now: dict[str, Any], old: dict[str, Any] | None) -> dict[str, Any]:
    """Changes since the last review (a group new since then: everything it has)."""
    old = old or {"customers": 0, "revenue": "0"}

    def delta(key: str) -> float | None:
        a, b = now.get(key), old.get(key)
        return None if a is None or b is None else round(float(a) - float(b), 6)

    return {
        "customers": now["customers"] - old["customers"],
        "revenue": round(float(now["revenue"]) - float(old["revenue"]), 2),
        "retention": delta("retention"),
        "mean_clv_12m": delta("mean_clv_12m"),
        "previous_customers": old["customers"],
    }


def _flows(
    by: str,
    since_day: str | None,
    as_of: datetime,
    tallies: dict[str, int] | None,
    previous: dict[str, Any] | None,
    changes: Sequence[Change] | None,
) -> tuple[dict[str, dict[str, int]] | None, str | None]:
    """Moves into and out of each group since the last review, and where they come from.

    From a replay: its changes dated after the last review's as-of day. From the store: the
    difference of the running flow totals (``/flows``) since the last review.
    """
    if previous is None or since_day is None:
        return None, None
    moves: Counter[tuple[str | None, str | None]] = Counter()
    if changes is not None:
        last = day_to_date(utc_day(as_of))
        for change in changes:
            when = change.occurred_at.date()
            if not (since_day < when.isoformat() and when <= last):
                continue
            if by == "segment":
                pair = (change.previous_segment, change.new_segment)
            else:
                pair = (change.previous_behaviour, change.new_behaviour)
            if pair[0] != pair[1]:
                moves[pair] += 1
        source = "replayed tier changes"
    elif tallies is not None:
        before = previous.get("tallies", {})
        prefix = f"flow:{by}:"
        for name, count in tallies.items():
            if name.startswith(prefix):
                pair = json.loads(name.removeprefix(prefix))
                moves[(pair[0], pair[1])] += count - int(before.get(name, 0))
        source = "store flow totals"
    else:
        return None, None
    flows: dict[str, dict[str, int]] = {}
    for (src, dst), count in moves.items():
        if src is not None:
            flows.setdefault(src, {"in": 0, "out": 0})["out"] += count
        if dst is not None:
            flows.setdefault(dst, {"in": 0, "out": 0})["in"] += count
    return flows, source


def suggest(
    groups: list[dict[str, Any]], settings: ReviewSettings, *, first: bool
) -> list[dict[str, str]]:
    """Merge / split / retire suggestions, each with the rule and figures behind it."""
    out: list[dict[str, str]] = []
    live = [g for g in groups if g["customers"] > 0]
    for group in groups:
        name = group["group"]
        if group["customers"] == 0:
            out.append({"action": "retire", "group": name, "why": "empty: no customer"})
            continue
        trend = group.get("trend")
        if not first and trend and trend["previous_customers"] > 0:
            lost = -trend["customers"] / trend["previous_customers"]
            if lost > float(settings.shrink_share):
                out.append(
                    {
                        "action": "retire",
                        "group": name,
                        "why": f"shrinking: lost {lost:.0%} of its customers since the last "
                        f"review (threshold {float(settings.shrink_share):.0%})",
                    }
                )
        if group["customer_share"] < float(settings.min_customer_share):
            closest = _closest(group, live)
            out.append(
                {
                    "action": "merge",
                    "group": name,
                    "with": closest or "",
                    "why": f"too small: {group['customer_share']:.1%} of the customers "
                    f"(threshold {float(settings.min_customer_share):.0%})",
                }
            )
        spread = group.get("revenue_spread")
        if spread is not None and spread > float(settings.max_revenue_spread):
            out.append(
                {
                    "action": "split",
                    "group": name,
                    "why": f"too spread: revenue per customer varies {spread:.2f} times its "
                    f"mean (threshold {float(settings.max_revenue_spread):.2f})",
                }
            )
    for i, a in enumerate(live):
        for b in live[i + 1 :]:
            if _close(a, b, settings):
                out.append(
                    {
                        "action": "merge",
                        "group": a["group"],
                        "with": b["group"],
                        "why": f"too close: revenue per customer {a['revenue_per_customer']:.2f} "
                        f"vs {b['revenue_per_customer']:.2f}, retention "
                        f"{a['retention']:.1%} vs {b['retention']:.1%}",
                    }
                )
    return out


def _close(a: dict[str, Any], b: dict[str, Any], settings: ReviewSettings) -> bool:
    ra, rb = a["revenue_per_customer"], b["revenue_per_customer"]
    ta, tb = a.get("retention"), b.get("retention")
    if ta is None or tb is None or max(ra, rb) <= 0:
        return False
    relative = abs(ra - rb) / max(ra, rb)
    close_revenue = relative <= float(settings.close_revenue_per_customer)
    return bool(close_revenue and abs(ta - tb) <= float(settings.close_retention))


def _closest(group: dict[str, Any], live: list[dict[str, Any]]) -> str | None:
    others = [g for g in live if g["group"] != group["group"]]
    if not others:
        return None
    best = min(others, key=lambda g: abs(g["revenue_per_customer"] - group["revenue_per_customer"]))
    return str(best["group"])


def print_review(review: dict[str, Any]) -> None:
    console = Console(width=max(140, Console().width))
    if review["first"]:
        console.print(
            f"First review (as of {review['as_of']}): no earlier review to compare with; "
            "this is the current state, kept for the next review."
        )
    else:
        was = review["compared_with"]
        console.print(
            f"Review {review['review_id']} as of {review['as_of']}, compared with review "
            f"{was['review_id']} as of {was['as_of']}."
        )
    for by, part in review["dimensions"].items():
        table = Table(title=f"{by} ({part['flows_source'] or 'flows not counted'})")
        for column in (
            "group",
            "customers",
            "Δ",
            "revenue",
            "Δ revenue",
            "retention",
            "Δ ret.",
            "CLV 12m",
            "spread",
            "in",
            "out",
        ):
            table.add_column(column, justify="left" if column == "group" else "right")
        for g in part["groups"]:
            trend, flows = g["trend"] or {}, g["flows"] or {}
            table.add_row(
                str(g["group"]),
                f"{g['customers']:,}",
                _num(trend.get("customers"), "{:+,}"),
                g["revenue"],
                _num(trend.get("revenue"), "{:+,.2f}"),
                _num(g["retention"], "{:.1%}"),
                _num(trend.get("retention"), "{:+.1%}"),
                _num(g["mean_clv_12m"], "{:,.2f}"),
                _num(g["revenue_spread"], "{:.2f}"),
                _num(flows.get("in"), "{:,}"),
                _num(flows.get("out"), "{:,}"),
            )
        console.print(table)
        if not part["groups"]:
            console.print(f"  no {by} groups (no model published yet?)")
        for s in part["suggestions"]:
            target = f" with {s['with']}" if s.get("with") else ""
            console.print(f"  suggest {s['action']} {s['group']}{target}: {s['why']}")


def _num(value: Any, fmt: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return fmt.format(value)
