"""The segment report printed at the end of a replay: sizes, revenue share, average RFM."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from rich.console import Console
from rich.table import Table


def segment_rows(records: Iterable[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        if record.get(key) is not None:
            groups[record[key]].append(record)
    total_customers = sum(len(g) for g in groups.values())
    total_revenue = sum((Decimal(r["monetary"]) for g in groups.values() for r in g), Decimal(0))
    rows = []
    for name, members in groups.items():
        revenue = sum((Decimal(r["monetary"]) for r in members), Decimal(0))
        n = len(members)
        rows.append(
            {
                key: name,
                "customers": n,
                "share": n / total_customers if total_customers else 0.0,
                "revenue": revenue,
                "revenue_share": float(revenue / total_revenue) if total_revenue else 0.0,
                "avg_recency_days": sum(r["recency_days"] for r in members) / n,
                "avg_frequency": sum(r["frequency"] for r in members) / n,
                "avg_monetary": revenue / n,
            }
        )
    rows.sort(key=lambda row: row["revenue"], reverse=True)
    return rows


def print_report(console: Console, records: list[dict[str, Any]]) -> None:
    for key, title in (("segment", "Segments"), ("tier", "Value tiers")):
        table = Table(title=title)
        for column in (key, "customers", "share", "revenue share", "avg R days", "avg F", "avg M"):
            table.add_column(column, justify="left" if column == key else "right")
        for row in segment_rows(records, key):
            table.add_row(
                str(row[key]),
                f"{row['customers']:,}",
                f"{row['share']:.1%}",
                f"{row['revenue_share']:.1%}",
                f"{row['avg_recency_days']:.0f}",
                f"{row['avg_frequency']:.2f}",
                f"{row['avg_monetary']:.2f}",
            )
        console.print(table)
