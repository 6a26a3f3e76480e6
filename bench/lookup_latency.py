"""p50/p99 of the support lookups against a real Redis holding CDNOW's state.

    python -m bench.lookup_latency [--redis redis://127.0.0.1:6379/0] [--requests 2000]

Commits every CDNOW customer's state (as of 1998-07-01) into a fresh namespace, serves
the API on loopback and times ``GET /customers/{id}/tier`` (one id per request) and
``POST /customers/lookup`` (100 ids per request) over a keep-alive connection, one
request at a time. The namespace is wiped afterwards.
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import statistics
import time
import uuid

from tests.integration.api_support import Served, cdnow, commit_states
from tierstream.api import create_api
from tierstream.settings import Settings
from tierstream.stores.redis import RedisStore


def percentiles(samples: list[float]) -> str:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return f"p50 {statistics.median(ordered) * 1000:.2f} ms, p99 {p99 * 1000:.2f} ms"


def timed(connection: http.client.HTTPConnection, method: str, path: str, body: bytes | None):
    started = time.perf_counter()
    connection.request(method, path, body=body, headers={"Content-Type": "application/json"})
    response = connection.getresponse()
    response.read()
    elapsed = time.perf_counter() - started
    assert response.status == 200, response.status
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()
    replayed = cdnow()
    store = RedisStore(args.redis, partitions=4, namespace=f"lat{uuid.uuid4().hex[:8]}")
    store.wipe()
    try:
        commit_states(store, replayed.states.values())
        ids = sorted(replayed.states)
        rng = random.Random(7)
        settings = Settings(partitions=4, clock="event")
        with Served(create_api(store, replayed.scorer, settings)) as served:
            connection = http.client.HTTPConnection("127.0.0.1", served.port, timeout=10)
            for _ in range(200):  # warm-up
                timed(connection, "GET", f"/customers/{rng.choice(ids)}/tier", None)
            single = [
                timed(connection, "GET", f"/customers/{rng.choice(ids)}/tier", None)
                for _ in range(args.requests)
            ]
            batch = [
                timed(
                    connection,
                    "POST",
                    "/customers/lookup",
                    json.dumps({"ids": rng.sample(ids, 100)}).encode(),
                )
                for _ in range(args.requests // 4)
            ]
            connection.close()
        print(f"{len(ids):,} CDNOW customers in Redis ({args.redis})")
        print(f"GET /customers/{{id}}/tier       ({len(single)} requests): {percentiles(single)}")
        print(f"POST /customers/lookup, 100 ids ({len(batch)} requests): {percentiles(batch)}")
    finally:
        store.wipe()
        store.close()


if __name__ == "__main__":
    main()
