"""The ``erase`` command: erasure requests for customers, optionally waited for."""

from __future__ import annotations

import json
import time
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from tierstream.cli_input import fail, load_settings, problems, say
from tierstream.erasure import ErasureRequest
from tierstream.settings import Settings

# How often --wait looks at the applied offsets.
POLL_SECONDS = 0.25


def erase_command(
    customer_ids: Annotated[list[str], typer.Argument(help="Customer ids to erase")],
    suppress: Annotated[
        bool,
        typer.Option(
            help="Dead-letter (kind 'erased') later events for these ids instead of "
            "starting a fresh state"
        ),
    ] = False,
    wait: Annotated[
        float,
        typer.Option(
            help="Wait up to this many seconds for the workers to apply the requests "
            "(exit 1 if they have not)"
        ),
    ] = 0.0,
) -> None:
    """Erase customers (GDPR/CCPA): requests on the erasures topic, applied by the workers.

    Prints one JSON line per request (event_id, customer_id, requested_at, partition,
    offset). Everything held about the customer is removed; see docs/operations.md.
    """
    from tierstream.erasure_requests import ErasureRequester  # noqa: PLC0415 - Kafka client

    settings = load_settings()
    for cid in customer_ids:  # all checked before any is sent
        try:
            ErasureRequest.model_validate(
                {"event_id": "check", "customer_id": cid, "requested_at": "2000-01-01T00:00Z"}
            )
        except ValidationError as exc:
            fail(f"customer id {cid!r}: {problems(exc, values=False)}")
    requester = ErasureRequester(settings)
    try:
        sent = requester.request(customer_ids, suppress=suppress)
    except Exception as exc:  # noqa: BLE001 - one line, exit 2
        fail(f"cannot send erasure requests to {settings.topic_erasures}: {exc}")
    finally:
        requester.close()
    for request in sent:
        print(json.dumps(request))
    if wait > 0 and not _wait_applied(settings, sent, wait):
        say(f"not applied within {wait:g}s: is a worker running?", "red")
        raise typer.Exit(1)


def _wait_applied(settings: Settings, sent: list[dict[str, Any]], seconds: float) -> bool:
    """True once every request's offset is below its shard's applied offset."""
    from tierstream.stores.from_settings import redis_store  # noqa: PLC0415 - Redis when used

    store = redis_store(settings)
    deadline = time.monotonic() + seconds
    pending = {(int(r["partition"]), int(r["offset"])) for r in sent}
    try:
        while pending and time.monotonic() < deadline:
            for partition, offset in list(pending):
                if store.offsets(partition).get(settings.topic_erasures, 0) > offset:
                    pending.discard((partition, offset))
            if pending:
                time.sleep(POLL_SECONDS)
    finally:
        store.close()
    return not pending
