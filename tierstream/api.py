"""The read-only HTTP API and dashboard: who is this customer, and why; pipeline health.

``create_api(store, scorer, settings, metrics)`` builds the aiohttp application that both
``tierstream serve`` (standalone, reading Redis) and the worker (``attach_api``) serve.
Routes (docs/api.md; the OpenAPI document is tierstream/openapi.py):

    GET /customers/{id}  state record as of now, why (the rules), recent tier changes
    GET /customers/{id}/tier, POST /customers/lookup: tier, VIP, service level
                         (tierstream/api_lookup.py)
    GET /tiers           customers per tier       } counted by a scan of every state,
    GET /segments        customers per segment    } reused for ``settings.sizes_ttl`` s
    GET /flows           running totals: tier/segment flows, changes by cause, outcomes
    GET /model           the published behaviour model (centroids), if any
    GET /kpis            KPIs by tier, segment or behaviour (tierstream/api_kpis.py)
    GET /healthz         Redis PING and a Kafka metadata request: 200 or 503
    GET /metrics         Prometheus text
    GET /openapi.json    the OpenAPI 3.1 document
    GET /                the dashboard (one static page polling the routes above)

The store is blocking (redis-py), so every store call runs in a worker thread, bounded by
``STORE_TIMEOUT``: a Redis outage turns into a prompt 503, never a hung event loop.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import json
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from importlib import resources
from typing import TYPE_CHECKING, Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from scoring.days import day_start, utc_day
from scoring.engine import Scorer
from streams.kafka_probe import KafkaProbe
from streams.metrics import NO_TIER, PipelineGauges
from tierstream import asof
from tierstream.api_accounts import add_account_routes
from tierstream.api_audiences import add_audience_routes
from tierstream.api_common import (
    customer_view,
    error,
    invalid_id,
    parse_as_of,
    respond,
    segment_names,
    tier_names,
)
from tierstream.api_kpis import add_kpi_routes, lookup_fields
from tierstream.api_lookup import add_lookup_routes
from tierstream.api_privacy import add_privacy_routes
from tierstream.api_state import STATE_KEY, ApiState, SizesCache, StoreUnavailableError
from tierstream.audiences import Sizes
from tierstream.openapi import OPENAPI
from tierstream.settings import Settings
from tierstream.stores.base import StateStore

if TYPE_CHECKING:
    from streams.metrics import Metrics

log = logging.getLogger("tierstream.api")

# A health check PINGs Redis with the store's no-retry client (1 s timeout) and gives the
# thread a little more before reporting it unreachable.
PING_TIMEOUT = 1.5
# Routes anyone may call even when a token is set: health probes (orchestrators carry no
# token), and the dashboard's static page, which holds no data and asks for the token
# itself, because a browser cannot attach a bearer header to a page load.
PUBLIC = frozenset({"/healthz", "/"})


class SizeGauges(Collector):
    """``tierstream_customers{tier}`` and ``{segment}`` from the last counted sizes."""

    def __init__(self, cache: SizesCache) -> None:
        self.cache = cache

    def collect(self) -> Iterator[Metric]:
        sizes = self.cache.latest
        if sizes is None:
            return
        tiers = GaugeMetricFamily(
            "tierstream_customers_by_tier", "Customers per tier (last scan)", labels=["tier"]
        )
        for name, count in sorted(sizes.tiers.items(), key=lambda kv: str(kv[0])):
            tiers.add_metric([name or NO_TIER], count)
        segments = GaugeMetricFamily(
            "tierstream_customers_by_segment",
            "Customers per segment (last scan)",
            labels=["segment"],
        )
        for name, count in sorted(sizes.segments.items(), key=lambda kv: str(kv[0])):
            segments.add_metric([name or NO_TIER], count)
        yield tiers
        yield segments


# ------------------------------------------------------------------- factory


def create_api(
    store: StateStore,
    scorer: Scorer,
    settings: Settings,
    metrics: Metrics | None = None,
    *,
    kafka: KafkaProbe | None = None,
) -> web.Application:
    """The API application (read-only). ``metrics``: the worker's, when served by one.

    ``kafka`` defaults to a probe of ``settings.kafka_bootstrap`` (health and lag).
    """
    registry = CollectorRegistry()
    if kafka is None:
        kafka = KafkaProbe(settings.kafka_bootstrap, client_options=settings.client_options())
    topics = (settings.topic_purchases, settings.topic_engagements)
    sizes = SizesCache(store, settings.sizes_ttl)
    registry.register(SizeGauges(sizes))
    token = settings.api_token.get_secret_value().encode() if settings.api_token else None
    state = ApiState(
        store=store,
        scorer=scorer,
        settings=settings,
        metrics=metrics,
        kafka=kafka,
        registry=registry,
        gauges=PipelineGauges(store, kafka, topics, registry),
        sizes=sizes,
        token=token,
    )
    app = web.Application(middlewares=[_errors, _auth])
    app[STATE_KEY] = state
    app.router.add_get("/", dashboard)
    add_privacy_routes(app)
    add_lookup_routes(app)  # before /customers/{id}, which would match .../tier
    # Any character, newline included ("." would leave ids with %0A to a bare 404).
    app.router.add_get(r"/customers/{customer_id:[\s\S]*}", customer)
    add_audience_routes(app)  # GET /tiers/{tier}/members, /segments/.., /behaviours/..
    app.router.add_get("/tiers", tiers)
    app.router.add_get("/segments", segments)
    app.router.add_get("/flows", flows)
    app.router.add_get("/model", model)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics_text)
    app.router.add_get("/openapi.json", openapi)
    add_kpi_routes(app)  # GET /kpis
    add_account_routes(app)  # GET /accounts/{id}

    async def close_probe(app: web.Application) -> None:
        probe = app[STATE_KEY].kafka
        if probe is not None:
            await probe.close()

    app.on_cleanup.append(close_probe)
    return app


# --------------------------------------------------------------- middlewares


@web.middleware
async def _errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """JSON bodies for every error, including aiohttp's own 404 and 405."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400 or exc.content_type == "application/json":
            raise
        return error(exc.status, exc.reason.lower())
    except StoreUnavailableError as exc:
        log.warning("%s %s: state store unavailable: %s", request.method, request.path, exc)
        return error(503, "state store unavailable", detail=str(exc))


@web.middleware
async def _auth(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    token = request.app[STATE_KEY].token
    if token is None or request.path in PUBLIC:
        return await handler(request)
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token):
        response = error(401, "unauthorized", detail="send Authorization: Bearer <token>")
        response.headers["WWW-Authenticate"] = 'Bearer realm="tierstream"'
        return response
    return await handler(request)


# -------------------------------------------------------------------- routes


async def customer(request: web.Request) -> web.Response:
    api = request.app[STATE_KEY]
    customer_id = request.match_info["customer_id"]
    problem = invalid_id(customer_id)
    if problem is not None:
        return error(400, problem, customer_id=customer_id)
    as_of: datetime | None = None
    explicit = request.query.get("as_of")
    if explicit is not None:
        try:
            as_of = parse_as_of(explicit)
        except ValueError as exc:
            return error(
                400,
                "as_of must be YYYY-MM-DD or an ISO-8601 datetime with offset, "
                f"from {asof.EARLIEST_AS_OF.date()} to before {asof.LATEST_AS_OF.date()}",
                detail=str(exc),
            )
    elif api.settings.clock == "wall":
        # The worker's clock: with it, time-driven changes are committed within seconds of
        # their moment, so "now" shows what the tier-changes topic says. Under the event
        # clock (backfills) there is no shared now: the state's own clock is shown.
        as_of = api.settings.make_clock().now()
    state, history = await api.call(lambda: api.store.lookup(customer_id))
    if state is None:
        return error(404, "unknown customer", customer_id=customer_id)
    if explicit is not None and state.clock_day is not None and as_of is not None:
        if utc_day(as_of) < state.clock_day:
            return error(
                400,
                "as_of is earlier than the day this customer was last scored",
                customer_id=customer_id,
                scored_until=day_start(state.clock_day).date().isoformat(),
            )
    scorer = await api.current_scorer()
    record, pending = customer_view(scorer, state, as_of)
    record["pending_changes"] = pending
    record["history"] = history
    snapshot = await api.snapshot()
    if snapshot is not None:
        from tierstream.behaviours import behaviour_record  # noqa: PLC0415 - numpy/models

        moment = as_of or day_start(state.clock_day or 0)
        record["behaviour"] = behaviour_record(snapshot, scorer, state, moment)
    day = max(utc_day(as_of) if as_of is not None else 0, state.clock_day or 0)
    record.update(await lookup_fields(request.app, state, day))
    return respond(record)


def _ordered(names: list[str], counts: Counter[str | None]) -> list[dict[str, Any]]:
    """Configured names first, in config order (zero counts included), then any others."""
    rows = [{"name": name, "customers": counts.get(name, 0)} for name in names]
    extra = sorted(str(name) for name in counts if name is not None and name not in names)
    rows += [{"name": name, "customers": counts[name]} for name in extra]
    return rows


def _sizes_body(api: ApiState, sizes: Sizes) -> dict[str, Any]:
    return {
        "customers": sizes.customers,
        "computed_at": sizes.computed_at.isoformat(),
        "age_seconds": round(time.monotonic() - sizes.monotonic, 3),
        "max_age_seconds": api.sizes.ttl,
        "scan_seconds": round(sizes.seconds, 3),
        "method": sizes.method,
    }


async def _sizes(api: ApiState) -> Sizes:
    try:
        return await api.sizes.get()
    except Exception as exc:  # the scan's failure, reported as 503
        raise StoreUnavailableError(f"{type(exc).__name__}: {exc}") from exc


async def tiers(request: web.Request) -> web.Response:
    return await _per_group(request, "tiers", tier_names, lambda sizes: sizes.tiers)


async def segments(request: web.Request) -> web.Response:
    return await _per_group(request, "segments", segment_names, lambda sizes: sizes.segments)


async def _per_group(
    request: web.Request,
    field: str,
    names: Callable[[Scorer], list[str]],
    counts_of: Callable[[Sizes], Counter[str | None]],
) -> web.Response:
    """Customers per tier or RFM segment in the config's order, from the last count (reused
    for ``sizes_ttl`` seconds), and how many have none."""
    api = request.app[STATE_KEY]
    sizes = await _sizes(api)
    counts = counts_of(sizes)
    body = _sizes_body(api, sizes)
    body[field] = _ordered(names(await api.current_scorer()), counts)
    body["unplaced"] = counts.get(None, 0)
    return respond(body)


async def flows(request: web.Request) -> web.Response:
    """The store's running totals (every worker, exactly once, since the first commit)."""
    api = request.app[STATE_KEY]
    scorer = await api.current_scorer()
    tallies = await api.call(api.store.tallies)
    tier_flows: list[dict[str, Any]] = []
    segment_flows: list[dict[str, Any]] = []
    behaviour_flows: list[dict[str, Any]] = []
    causes: dict[str, int] = {}
    dead_letters: dict[str, int] = {}
    events: dict[str, int] = {}
    for name, value in sorted(tallies.items()):
        if name.startswith("flow:"):
            _, kind, pair = name.split(":", 2)
            previous, new = json.loads(pair)
            row = {"from": previous, "to": new, "changes": value}
            kinds = {"tier": tier_flows, "segment": segment_flows, "behaviour": behaviour_flows}
            kinds.get(kind, segment_flows).append(row)
        elif name.startswith("change:"):
            causes[name.removeprefix("change:")] = value
        elif name.startswith("dead_letter:"):
            dead_letters[name.removeprefix("dead_letter:")] = value
        elif name.startswith("learn:"):
            continue  # learned behaviour statistics (tierstream behaviours --show)
        elif name.startswith("size:") or name == "customers":
            continue  # audience sizes and the customer count (GET /tiers, /segments)
        else:
            events[name] = value
    return respond(
        {
            "tiers": tier_names(scorer),
            "segments": segment_names(scorer),
            "tier_flows": tier_flows,
            "segment_flows": segment_flows,
            "behaviour_flows": behaviour_flows,
            "changes_by_cause": causes,
            "dead_letters_by_kind": dead_letters,
            "events": events,
            "totals": {
                "changes": sum(causes.values()),
                "dead_letters": sum(dead_letters.values()),
                # customer events only: not re-scorings, nor trait updates (profile:*)
                "events": sum(
                    v for k, v in events.items() if k != "rescored" and not k.startswith("profile:")
                ),
            },
            "read_at": datetime.now(UTC).isoformat(),
        }
    )


async def model(request: web.Request) -> web.Response:
    api = request.app[STATE_KEY]
    snapshot = await api.snapshot()
    return respond({"model": None if snapshot is None else snapshot.to_dict()})


async def healthz(request: web.Request) -> web.Response:
    api = request.app[STATE_KEY]
    redis_check, kafka_check = await asyncio.gather(_check_redis(api), _check_kafka(api))
    ok = redis_check["ok"] and kafka_check["ok"]
    body: dict[str, Any] = {
        "status": "ok" if ok else "unavailable",
        "redis": redis_check,
        "kafka": kafka_check,
    }
    stopped = api.metrics.stopped if api.metrics is not None else {}
    if stopped:
        # A worker that stopped a shard is about to exit for its supervisor: say why.
        ok = False
        body["status"] = "stopped"
        body["stopped_shards"] = {str(shard): why for shard, why in sorted(stopped.items())}
    return respond(body, status=200 if ok else 503)


async def _check_redis(api: ApiState) -> dict[str, Any]:
    try:
        seconds = await asyncio.wait_for(api.gauges.ping_redis(), PING_TIMEOUT)
    except TimeoutError:
        return {"ok": False, "detail": f"no PING reply within {PING_TIMEOUT:g}s"}
    except Exception as exc:  # noqa: BLE001 - reported
        return {"ok": False, "detail": f"{type(exc).__name__}: {exc}"}
    return {"ok": True, "detail": "PONG", "seconds": round(seconds, 6)}


async def _check_kafka(api: ApiState) -> dict[str, Any]:
    if api.kafka is None:
        return {"ok": True, "detail": "not checked"}
    health = await api.kafka.health()
    age = time.monotonic() - health.checked_at
    return {
        "ok": health.ok,
        "detail": health.detail,
        "seconds": round(health.seconds, 6),
        "age_seconds": round(age, 3),
    }


async def metrics_text(request: web.Request) -> web.Response:
    api = request.app[STATE_KEY]
    await api.gauges.refresh()
    body = generate_latest(api.registry)
    if api.metrics is not None:
        body += generate_latest(api.metrics.registry)
    response = web.Response(body=body)
    response.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return response


async def openapi(request: web.Request) -> web.Response:
    return respond(OPENAPI)


@functools.cache
def dashboard_page() -> bytes:
    """The dashboard: one static file, no build step (tierstream/dashboard.html)."""
    return resources.files("tierstream").joinpath("dashboard.html").read_bytes()


async def dashboard(request: web.Request) -> web.Response:
    response = web.Response(body=dashboard_page(), content_type="text/html", charset="utf-8")
    response.headers["Cache-Control"] = "no-cache"
    return response


# ------------------------------------------------------------------- serving


async def start_api(app: web.Application, host: str, port: int) -> Callable[[], Awaitable[None]]:
    """Serve ``app`` on host:port from the running event loop; returns the stop function."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    log.info("API listening on http://%s:%d", host, port)
    return runner.cleanup
