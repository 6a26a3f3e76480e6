"""The API's privacy routes: erase a customer, export what is held about one.

    DELETE /customers/{id}          202: an erasure request sent to the erasures topic
                                    (?suppress=true: later events are dead-lettered)
    GET    /customers/{id}/export   everything held about the customer, as JSON

Both need the bearer token when one is set, like every data route.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from tierstream.api_common import error, invalid_id, respond
from tierstream.api_state import STATE_KEY
from tierstream.erasure_requests import ErasureRequester
from tierstream.personal_data import customer_export

REQUESTER_KEY = web.AppKey("erasure_requester", ErasureRequester)
# Kafka answers a request in milliseconds; this bounds a broker that does not.
SEND_TIMEOUT = 35.0


def add_privacy_routes(app: web.Application) -> None:
    """Register the routes (before ``GET /customers/{id}``, whose pattern takes any id)."""
    settings = app[STATE_KEY].settings
    app[REQUESTER_KEY] = ErasureRequester(settings)
    app.router.add_get(r"/customers/{customer_id:[\s\S]*}/export", export)
    app.router.add_delete(r"/customers/{customer_id:[\s\S]*}", erase)

    async def close_requester(app: web.Application) -> None:
        await asyncio.to_thread(app[REQUESTER_KEY].close)

    app.on_cleanup.append(close_requester)


async def export(request: web.Request) -> web.Response:
    api = request.app[STATE_KEY]
    customer_id = request.match_info["customer_id"]
    problem = invalid_id(customer_id)
    if problem is not None:
        return error(400, problem, customer_id=customer_id)
    scorer = await api.current_scorer()
    body = await api.call(lambda: customer_export(api.store, scorer, customer_id))
    if body is None:
        return error(404, "nothing held about this customer", customer_id=customer_id)
    return respond(body)


async def erase(request: web.Request) -> web.Response:
    customer_id = request.match_info["customer_id"]
    problem = invalid_id(customer_id)
    if problem is not None:
        return error(400, problem, customer_id=customer_id)
    suppress = request.query.get("suppress", "false").lower()
    if suppress not in ("true", "false", "1", "0"):
        return error(400, "suppress must be true or false", suppress=suppress)
    requester = request.app[REQUESTER_KEY]
    try:
        [sent] = await asyncio.wait_for(
            asyncio.to_thread(requester.request, [customer_id], suppress=suppress in ("true", "1")),
            SEND_TIMEOUT,
        )
    except Exception as exc:  # noqa: BLE001 - the broker's failure is a 503 with its reason
        return error(503, "the erasure request could not be sent", detail=str(exc))
    return respond({**sent, "status": "accepted"}, status=202)
