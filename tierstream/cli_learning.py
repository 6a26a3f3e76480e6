"""``tierstream behaviours --show``: the behaviour model in force and what it was learned from.

Reads the published snapshot, the coordinator's last merge (``segments_learning``) and the
shards' learned statistics (``learn:`` totals of their ``stats`` hashes); writes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from rich.table import Table

from models.features import DEFAULT_FEATURE_SPEC, to_original_units
from models.learning import UNASSIGNED, PopulationStats, in_feature_order
from models.snapshot import BehaviourSnapshot
from streams.behaviour_learning import STATUS_META
from tierstream.behaviours import SNAPSHOT_META
from tierstream.cli_input import console, fail
from tierstream.stores.base import StateStore


def learned_model(store: StateStore) -> dict[str, Any]:
    """Version in force, events learned from, and per behaviour: label, size, centroid."""
    raw = store.get_meta(SNAPSHOT_META)
    if raw is None:
        fail(
            "no behaviour model yet: workers learn one (TIERSTREAM_LEARN_BEHAVIOURS=true) "
            "or run `tierstream behaviours`"
        )
    snapshot = BehaviourSnapshot.from_bytes(raw)
    names = DEFAULT_FEATURE_SPEC.names
    population = PopulationStats.from_tallies(store.tallies(), len(names))
    status_raw = store.get_meta(STATUS_META)
    status = json.loads(status_raw) if status_raw else {}
    same_features = set(snapshot.feature_names) == set(names)
    ordered = in_feature_order(snapshot, names) if same_features else snapshot
    unassigned = population.behaviours.get(UNASSIGNED)
    total = population.customers - (unassigned.n if unassigned is not None else 0)
    rows = []
    for behaviour in ordered.behaviours:
        members = population.behaviours.get(behaviour.behaviour_id)
        size = members.n if members is not None else 0
        centroid = to_original_units(
            dict(zip(ordered.feature_names, behaviour.centroid, strict=True))
        )
        rows.append(
            {
                "segment_id": behaviour.behaviour_id,
                "label": behaviour.label,
                "customers": size,
                "share": size / total if total else behaviour.share,
                "centroid": {key: round(value, 2) for key, value in centroid.items()},
            }
        )
    return {
        "version": snapshot.version,
        "created_at": snapshot.created_at.isoformat(),
        "events_learned": population.events,
        "customers_learned": population.customers,
        "segments": rows,
        "drift": {
            "last_merge_at": status.get("checked_at"),
            "centroid_shift": status.get("shift"),
            "published": status.get("published"),
        },
    }


def show_learned(store: StateStore, as_json: bool) -> None:
    model = learned_model(store)
    if as_json:
        print(json.dumps(model))
        return
    drift = model["drift"]
    shift = drift["centroid_shift"]
    table = Table(
        title=(
            f"Behaviour segments in force: model version {model['version']}, learned from "
            f"{model['events_learned']:,} events"
        ),
        caption=(
            f"last merge {drift['last_merge_at'] or 'none yet'}; largest centroid move "
            f"{'-' if shift is None else f'{shift:.3f}'} (standardized)"
        ),
    )
    fill_behaviour_table(table, model["segments"])
    console.print(table)


def fill_behaviour_table(table: Table, rows: Iterable[dict[str, Any]]) -> None:
    """The columns and rows of a behaviour segment table (learned or batch model):
    one row per behaviour, its centroid in original units."""
    for column in ("id", "label", "customers", "share", "recency d", "frequency", "monetary"):
        table.add_column(column, justify="left" if column == "label" else "right")
    table.add_column("AOV", justify="right")
    for row in rows:
        c = row["centroid"]
        table.add_row(
            str(row["segment_id"]),
            row["label"],
            f"{row['customers']:,}",
            f"{row['share']:.1%}",
            f"{c.get('recency_days', 0):.0f}",
            f"{c.get('frequency', 0):.1f}",
            f"{c.get('monetary', 0):.2f}",
            f"{c.get('avg_order_value', 0):.2f}",
        )
