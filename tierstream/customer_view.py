"""``tierstream customer``'s human view: one customer's record as a two-column table."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich.table import Table

# The record's fields in reading order, with the label shown; others follow as they come.
LABELS = {
    "customer_id": "customer",
    "tier": "tier",
    "segment": "segment",
    "behaviour": "behaviour segment",
    "why": "why",
    "recency_days": "recency (days)",
    "frequency": "frequency (in window)",
    "monetary": "monetary (in window)",
    "r": "R score",
    "f": "F score",
    "m": "M score",
    "engagement": "engagement",
    "last_purchase_at": "last purchase",
    "first_purchase_at": "first purchase",
    "version": "version",
    "as_of": "as of",
}


def _text(key: str, value: Any) -> str:
    if value is None:
        return "-"
    if key == "behaviour" and isinstance(value, Mapping):
        # segment_id: the deprecated name of behaviour_id, in records written before it
        number = value.get("behaviour_id", value.get("segment_id"))
        model = value.get("model_version")
        return f"{value.get('label')} (behaviour {number}, model v{model})"
    if isinstance(value, Mapping):
        return ", ".join(f"{k} {v}" for k, v in value.items()) or "-"
    return str(value)


def customer_table(record: Mapping[str, Any]) -> Table:
    """The record (as ``--json`` prints it) as a table, most useful rows first."""
    table = Table(show_header=False, box=None, padding=(0, 2, 0, 0))
    table.add_column(justify="right", style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    ordered = [key for key in LABELS if key in record]
    ordered += [key for key in record if key not in LABELS]
    for key in ordered:
        table.add_row(LABELS.get(key, key), _text(key, record[key]))
    return table
