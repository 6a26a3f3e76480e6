"""The API's KPI route and the lifetime value fields of a customer lookup.

``GET /kpis?by=tier|segment|behaviour[&as_of=DATE]``: the KPIs of every group
(docs/kpis.md), from one scan of every state, as of now (under the event clock: the
latest day a customer was scored). Like the sizes, a scan is O(customers), so
the answer is reused for ``max(sizes_ttl, KPI_TTL)`` seconds per as-of day, and at most
one scan runs at a time.

The lookup's ``p_alive`` and ``clv_12m`` come from the customer's state and the published
lifetime value snapshot (re-read at most every ``MODEL_TTL`` seconds): closed-form
arithmetic at read time, nothing in the worker.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import Any

from aiohttp import web

from scoring.days import day_start, utc_day
from scoring.state import CustomerState
from tierstream.api_common import error, parse_as_of, respond
from tierstream.api_state import MODEL_TTL, STATE_KEY, StoreUnavailableError, log
from tierstream.clv import CLV_META, ClvSnapshot, ClvSnapshotError, record_fields
from tierstream.kpis import DIMENSIONS, Population, kpi_table, population, unknown_dimension
from tierstream.published import Watched

KPI_TTL = 30.0  # seconds a KPI scan is reused (a scan of ten million states takes minutes)


class KpiState:
    def __init__(self) -> None:
        self.clv: Watched[ClvSnapshot | None] | None = None  # made with the first lookup
        self.populations: dict[int, tuple[float, Population]] = {}
        self.running: dict[int, asyncio.Task[Population]] = {}


KPI_KEY = web.AppKey("kpis", KpiState)


def add_kpi_routes(app: web.Application) -> None:
    app[KPI_KEY] = KpiState()
    app.router.add_get("/kpis", kpis)


async def clv_snapshot(app: web.Application) -> ClvSnapshot | None:
    api, own = app[STATE_KEY], app[KPI_KEY]
    if own.clv is None:

        def parse(raw: bytes) -> ClvSnapshot | None:
            try:
                return ClvSnapshot.from_bytes(raw)
            except ClvSnapshotError as exc:
                log.warning("the published lifetime value snapshot does not parse: %s", exc)
                return None

        own.clv = Watched(api.store, CLV_META, parse, MODEL_TTL)
    return await own.clv.refresh(api.call)


async def lookup_fields(app: web.Application, state: CustomerState, day: int) -> dict[str, Any]:
    """``p_alive``, ``clv_12m`` and ``clv_model_version`` of a customer as of ``day``."""
    return record_fields(await clv_snapshot(app), state, day)


async def kpis(request: web.Request) -> web.Response:
    api = request.app[STATE_KEY]
    by = request.query.get("by", "tier")
    if by not in DIMENSIONS:
        return error(400, unknown_dimension(by))
    explicit = request.query.get("as_of")
    as_of: datetime | None = None
    try:
        if explicit is not None:
            as_of = parse_as_of(explicit)
        elif api.settings.clock == "wall":
            as_of = api.settings.make_clock().now()
    except ValueError as exc:
        return error(400, "as_of must be YYYY-MM-DD or an ISO-8601 datetime", detail=str(exc))
    people = await _population(request.app, as_of)
    scorer = await api.current_scorer()
    body = kpi_table(scorer, people, by)
    body["computed_at"] = people.as_of.isoformat()
    return respond(body)


async def _population(app: web.Application, as_of: datetime | None) -> Population:
    """The population as of ``as_of``; None (the event clock, which has no shared now): as
    of the latest day any customer was scored, the population's own "now"."""
    api, own = app[STATE_KEY], app[KPI_KEY]
    day = utc_day(as_of) if as_of is not None else -1
    ttl = max(api.settings.sizes_ttl, KPI_TTL)
    cached = own.populations.get(day)
    if cached is not None and time.monotonic() - cached[0] < ttl:
        return cached[1]
    task = own.running.get(day)
    if task is None or task.done():
        scorer = await api.current_scorer()
        behaviours = await api.snapshot()
        clv = await clv_snapshot(app)

        def scan() -> Population:
            states = list(api.store.scan())
            moment = as_of
            if moment is None:
                latest = max((s.clock_day for s in states if s.clock_day is not None), default=0)
                moment = day_start(latest)
            return population(scorer, states, moment, behaviours=behaviours, clv=clv)

        task = own.running[day] = asyncio.create_task(asyncio.to_thread(scan))
    try:
        people = await asyncio.shield(task)
    except Exception as exc:  # the scan's failure, reported as 503
        raise StoreUnavailableError(f"{type(exc).__name__}: {exc}") from exc
    own.running.pop(day, None)
    # Keep few days: a dashboard asks for today; an as_of= query adds one more.
    if len(own.populations) > 8:
        own.populations.clear()
    own.populations[day] = (time.monotonic(), people)
    return people
