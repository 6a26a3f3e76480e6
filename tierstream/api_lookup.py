"""The support-ready lookups: is this customer a VIP, and how fast must we answer?

    GET  /customers/{id}/tier   tier, is_vip, service level, segment, behaviour, why
    POST /customers/lookup      the same for up to MAX_LOOKUP_IDS ids, in one store read

Made for a support system routing a ticket while the customer waits: one state read
(``GET`` of the home shard; the batch route pipelines every id in one round trip), no
history, no lifetime value, no behaviour-model scoring (the behaviour is the one the worker
committed). The service level comes from the scoring config's ``service_levels``;
``is_vip`` means the customer is in the highest tier of the plan.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from aiohttp import web

from scoring.engine import Scorer
from scoring.state import CustomerState
from tierstream.api_common import customer_view, error, invalid_id, respond
from tierstream.api_state import STATE_KEY
from tierstream.stores.base import StateStore

MAX_LOOKUP_IDS = 1_000


def add_lookup_routes(app: web.Application) -> None:
    # Registered before GET /customers/{id} (whose id may hold "/"): a customer id ending
    # in "/tier" is looked up with POST /customers/lookup.
    app.router.add_get(r"/customers/{customer_id:[\s\S]+}/tier", customer_tier)
    app.router.add_post("/customers/lookup", customers_lookup)


def read_states(store: StateStore, customer_ids: Sequence[str]) -> dict[str, CustomerState]:
    """The states of ``customer_ids`` that exist, in one round trip where the store can."""
    get_many = getattr(store, "get_many", None)
    if get_many is not None:
        found: dict[str, CustomerState] = get_many(customer_ids)
        return found
    states = (store.get(customer_id) for customer_id in dict.fromkeys(customer_ids))
    return {state.customer_id: state for state in states if state is not None}


def tier_view(scorer: Scorer, state: CustomerState, as_of: datetime | None) -> dict[str, Any]:
    """The support view of one customer's state, brought forward to ``as_of``."""
    record, _ = customer_view(scorer, state, as_of)
    tier = record["tier"]
    config = scorer.config
    level = config.service_levels.get(tier) if tier is not None else None
    return {
        "customer_id": state.customer_id,
        "tier": tier,
        "is_vip": tier is not None and tier == config.tiers.levels[0].name,
        "service_level": level.model_dump() if level is not None else None,
        "segment": record["segment"],
        "behaviour": state.behaviour[1] if state.behaviour is not None else None,
        "why": record["why"],
    }


def _now(request: web.Request) -> datetime | None:
    # As GET /customers/{id}: the wall clock's now, or the state's own clock in backfills.
    settings = request.app[STATE_KEY].settings
    return settings.make_clock().now() if settings.clock == "wall" else None


async def customer_tier(request: web.Request) -> web.Response:
    api = request.app[STATE_KEY]
    customer_id = request.match_info["customer_id"]
    problem = invalid_id(customer_id)
    if problem is not None:
        return error(400, problem, customer_id=customer_id)
    state = await api.call(lambda: api.store.get(customer_id))
    if state is None:
        return error(404, "unknown customer", customer_id=customer_id)
    scorer = await api.current_scorer()
    return respond(tier_view(scorer, state, _now(request)))


def parse_lookup(body: bytes) -> list[str]:
    """The ids of a lookup request body, or ValueError saying what is wrong with it."""
    try:
        request = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"the body is not JSON: {exc}") from None
    if not isinstance(request, dict) or "ids" not in request:
        raise ValueError('the body must be a JSON object {"ids": [...]}')
    ids = request["ids"]
    if not isinstance(ids, list) or not ids:
        raise ValueError("ids must be a non-empty list of customer ids")
    if len(ids) > MAX_LOOKUP_IDS:
        raise ValueError(f"at most {MAX_LOOKUP_IDS} ids per lookup, got {len(ids)}")
    for index, customer_id in enumerate(ids):
        if not isinstance(customer_id, str):
            raise ValueError(f"ids[{index}] is not a string")
        problem = invalid_id(customer_id)
        if problem is not None:
            raise ValueError(f"ids[{index}]: {problem}")
    return ids


async def customers_lookup(request: web.Request) -> web.Response:
    api = request.app[STATE_KEY]
    try:
        ids = parse_lookup(await request.read())
    except ValueError as exc:
        return error(400, str(exc))
    states = await api.call(lambda: read_states(api.store, ids))
    scorer = await api.current_scorer()
    as_of = _now(request)
    results = [
        {"found": True, **tier_view(scorer, states[customer_id], as_of)}
        if customer_id in states
        else {"customer_id": customer_id, "found": False, "error": "unknown customer"}
        for customer_id in ids
    ]
    return respond({"results": results})
