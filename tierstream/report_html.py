"""``tierstream report``: the KPIs as one self-contained HTML file (plots inlined as PNG).

No script, no external resource: the file opens anywhere, offline, and can be mailed.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from scoring.engine import Scorer
from scoring.state import CustomerState
from tierstream.kpis import DIMENSIONS, kpi_table, population

if TYPE_CHECKING:
    from models.snapshot import BehaviourSnapshot
    from tierstream.clv import ClvSnapshot

COLUMNS = (
    ("group", "group", "{}"),
    ("customers", "customers", "{:,}"),
    ("customer_share", "share", "{:.1%}"),
    ("revenue", "revenue", "{}"),
    ("revenue_share", "revenue share", "{:.1%}"),
    ("top20_revenue_share", "top 20% hold", "{:.1%}"),
    ("average_order_value", "AOV", "{}"),
    ("purchases_per_customer", "purchases / cust.", "{:.2f}"),
    ("retention", "retention", "{:.1%}"),
    ("churn_rate", "churn", "{:.1%}"),
    ("mean_p_alive", "mean P(alive)", "{:.2f}"),
    ("mean_clv_12m", "mean CLV 12m", "{:,.2f}"),
)


def render_report(
    scorer: Scorer,
    states: Sequence[CustomerState],
    as_of: datetime,
    behaviours: BehaviourSnapshot | None,
    clv: ClvSnapshot | None,
) -> str:
    people = population(scorer, states, as_of, behaviours=behaviours, clv=clv)
    sections = []
    for by, dimension in DIMENSIONS.items():
        table = kpi_table(scorer, people, by)
        rows = [row for row in table["groups"] if row["customers"]]
        if not rows:
            sections.append(
                f"<h2>{html.escape(dimension.title)}</h2><p>No customer is placed by "
                f"{html.escape(by)} (no model published yet?).</p>"
            )
            continue
        sections.append(_section(dimension.title, rows, table["all"]))
    clv_note = (
        f"lifetime value model v{clv.version} ({html.escape(clv.library)}, fitted as of "
        f"{clv.as_of.date()}, horizon {clv.horizon_days} days)"
        if clv is not None
        else "no lifetime value model: P(alive) and CLV are empty (run tierstream clv fit)"
    )
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>tierstream KPI report</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }}
th, td {{ border-bottom: 1px solid #ddd; padding: 0.3em 0.6em; text-align: right; }}
th:first-child, td:first-child {{ text-align: left; }}
tr.all td {{ font-weight: bold; border-top: 2px solid #888; }}
img {{ max-width: 100%; }}
.note {{ color: #666; }}
</style></head><body>
<h1>KPI report</h1>
<p class="note">As of {people.as_of.date()}, KPI window {people.period_days} days;
{len(people.customers):,} customers ({people.skipped} scored past the as-of day left out);
{clv_note}. Generated {generated}. Definitions: docs/kpis.md.</p>
{"".join(sections)}
</body></html>
"""


def _section(title: str, rows: list[dict[str, Any]], total: dict[str, Any]) -> str:
    head = "".join(f"<th>{html.escape(label)}</th>" for _, label, _ in COLUMNS)
    body = "".join(_row(row, "") for row in rows) + _row(total, "all")
    plots = "".join(
        f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{png}">'
        for alt, png in _plots(title, rows)
    )
    return (
        f"<h2>{html.escape(title)}</h2><table><thead><tr>{head}</tr></thead>"
        f"<tbody>{body}</tbody></table>{plots}"
    )


def _row(row: dict[str, Any], css: str) -> str:
    cells = []
    for key, _, fmt in COLUMNS:
        value = row.get(key)
        text = "–" if value is None else fmt.format(value)
        cells.append(f"<td>{html.escape(text)}</td>")
    return f'<tr class="{css}">' + "".join(cells) + "</tr>"


def _plots(title: str, rows: list[dict[str, Any]]) -> list[tuple[str, str]]:
    import matplotlib as mpl  # noqa: PLC0415 - heavy; only the report draws

    mpl.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    names = [str(row["group"]) for row in rows]
    x = range(len(names))
    longest = max(len(name) for name in names)
    # Long behavioural labels are slanted below the axes: give them the room they take.
    fig, axes = plt.subplots(1, 3, figsize=(15, 4 + min(longest, 48) * 0.05))
    width = 0.4
    axes[0].bar(
        [i - width / 2 for i in x], [r["customer_share"] for r in rows], width, label="customers"
    )
    axes[0].bar(
        [i + width / 2 for i in x], [r["revenue_share"] or 0 for r in rows], width, label="revenue"
    )
    axes[0].set_title("Share of customers and of revenue")
    axes[0].legend()
    axes[1].bar(x, [r["retention"] or 0 for r in rows], color="tab:green")
    axes[1].set_title("Retention (previous window's buyers who bought again)")
    axes[1].set_ylim(0, 1)
    axes[2].bar(x, [r["mean_clv_12m"] or 0 for r in rows], color="tab:purple")
    axes[2].set_title("Mean expected 12-month value")
    for ax in axes:
        ax.set_xticks(list(x))
        ax.set_xticklabels(names, rotation=35, ha="right", fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80)
    plt.close(fig)
    return [
        (
            f"{title}: shares, retention, lifetime value",
            base64.b64encode(buffer.getvalue()).decode(),
        )
    ]
