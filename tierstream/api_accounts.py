"""B2B accounts in the HTTP API.

    GET /accounts/{id}   the account's record (docs/contracts.md, account record), its
                         contacts with their own tier and segment, and its recent changes

Accounts live in their own namespace (tierstream/accounts.py); the contacts' tiers are read
from the customers' store in one round trip.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from scoring.accounts import AccountScorer, AccountState, account_change_event_id
from tierstream.accounts import account_store
from tierstream.api_common import error, invalid_id, respond
from tierstream.api_lookup import read_states
from tierstream.api_state import STATE_KEY
from tierstream.stores.redis import RedisStore

ACCOUNTS_KEY = web.AppKey("accounts", dict)


def add_account_routes(app: web.Application) -> None:
    app[ACCOUNTS_KEY] = {}
    app.router.add_get(r"/accounts/{account_id:[\s\S]*}", account)

    async def close_store(app: web.Application) -> None:
        store = app[ACCOUNTS_KEY].get("store")
        if store is not None:
            store.close()

    app.on_cleanup.append(close_store)


def _accounts(app: web.Application) -> tuple[RedisStore, AccountScorer]:
    held: dict[str, Any] = app[ACCOUNTS_KEY]
    if "store" not in held:
        api = app[STATE_KEY]
        held["store"] = account_store(api.settings)
        held["scorer"] = AccountScorer(api.scorer.config)
    return held["store"], held["scorer"]


async def account(request: web.Request) -> web.Response:
    api = request.app[STATE_KEY]
    account_id = request.match_info["account_id"]
    problem = invalid_id(account_id)
    if problem is not None:
        return error(400, problem.replace("customer id", "account id"), account_id=account_id)
    store, scorer = _accounts(request.app)
    state, history = await api.call(lambda: store.lookup(account_id))
    if state is None:
        return error(404, "unknown account", account_id=account_id)
    held = AccountState.of(state)
    # As GET /customers/{id}: the wall clock's now, or the state's own clock in backfills.
    as_of = api.settings.make_clock().now() if api.settings.clock == "wall" else None
    record = scorer.record(held, as_of)
    ids = sorted(held.contacts)
    customers = await api.call(lambda: read_states(api.store, ids))
    record["members"] = [
        {
            "customer_id": cid,
            "tier": customers[cid].tier if cid in customers else None,
            "segment": customers[cid].segment if cid in customers else None,
        }
        for cid in ids
    ]
    # The store names history entries' ids as a customer's; an account's are its own.
    record["history"] = [
        {**entry, "event_id": account_change_event_id(account_id, entry["version"])}
        for entry in history
    ]
    return respond(record)
