"""The two baselines, each a subprocess like the worker, timed the same way.

``python -m bench.consumers raw|naive OUT`` with settings in the environment
(``BENCH_BOOTSTRAP``, ``BENCH_TOPICS`` comma-separated, ``BENCH_GROUP``,
``BENCH_EXPECTED``, and for naive ``BENCH_REDIS_URL``, ``BENCH_NAMESPACE``,
``BENCH_PARTITIONS``).

* ``raw``: an aiokafka consumer in a consumer group, from the earliest offset, that reads
  every message and ``json.loads`` its value. Nothing else: the ceiling for any Python
  consumer of these topics on this machine.
* ``naive``: the tutorial way to keep per-customer aggregates in Redis from Faust: one agent
  (concurrency 1), JSON values, and for every event one awaited ``redis.asyncio``
  round trip (a pipeline of ``HINCRBYFLOAT`` of the amount or ``HINCRBY`` of the
  engagement count, plus ``HSET`` of the last-seen time). No batching, no exactly-once.

Both write JSON lines to OUT with ``time.monotonic()`` stamps (one clock for all
processes on Linux): ``{"first": t}`` at the first event, ``{"n": count, "t": t}`` every
1% of the expected events, and ``{"done": t, "n": count}`` when the expected count is
reached. The parent times from the moment it spawned the process.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from typing import IO, Any


class Progress:
    def __init__(self, out: IO[str], expected: int) -> None:
        self.out = out
        self.expected = expected
        self.count = 0
        self.step = max(1, expected // 100)

    def write(self, record: dict[str, Any]) -> None:
        self.out.write(json.dumps(record) + "\n")
        self.out.flush()

    def add(self, n: int = 1) -> bool:
        """Count ``n`` events; True once the expected count is reached."""
        before = self.count
        self.count += n
        now = time.monotonic()
        if before == 0:
            self.write({"first": now})
        if self.count // self.step != before // self.step:
            self.write({"n": self.count, "t": now})
        if self.count >= self.expected > before:
            self.write({"done": now, "n": self.count})
            return True
        return False


async def run_raw(progress: Progress) -> None:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        *os.environ["BENCH_TOPICS"].split(","),
        bootstrap_servers=os.environ["BENCH_BOOTSTRAP"],
        group_id=os.environ["BENCH_GROUP"],
        auto_offset_reset="earliest",
    )
    await consumer.start()
    decoded = 0
    try:
        while True:
            batches = await consumer.getmany(timeout_ms=200, max_records=5000)
            for records in batches.values():
                for record in records:
                    body = json.loads(record.value)
                    decoded += len(body)  # use the result
                if progress.add(len(records)):
                    return
    finally:
        await consumer.stop()


def run_naive(progress: Progress) -> None:
    import faust
    import redis.asyncio as aioredis

    namespace = os.environ["BENCH_NAMESPACE"]
    app = faust.App(
        os.environ["BENCH_GROUP"],
        broker=f"kafka://{os.environ['BENCH_BOOTSTRAP']}",
        store="memory://",
        web_enabled=False,
        consumer_auto_offset_reset="earliest",
        topic_partitions=int(os.environ.get("BENCH_PARTITIONS", "4")),
        topic_replication_factor=1,
    )
    topic = app.topic(
        *os.environ["BENCH_TOPICS"].split(","),
        key_type=bytes,
        key_serializer="raw",
        value_serializer="json",
    )
    client = aioredis.Redis.from_url(os.environ["BENCH_REDIS_URL"])

    @app.agent(topic)
    async def aggregate(stream: Any) -> None:
        async for event in stream:
            key = f"{namespace}:c:{event['customer_id']}"
            pipe = client.pipeline(transaction=False)
            if "amount" in event:
                amount = float(event["amount"])
                if event.get("kind") == "refund":
                    amount = -amount
                pipe.hincrbyfloat(key, "monetary", amount)
            else:
                pipe.hincrby(key, "engagements", 1)
            pipe.hset(key, "last_seen", event["occurred_at"])
            await pipe.execute()
            progress.add()

    worker = faust.Worker(app, loglevel="WARNING", quiet=True)
    worker.execute_from_commandline()


def main(argv: list[str]) -> int:
    mode, out_path = argv
    with open(out_path, "w", encoding="utf-8") as out:
        progress = Progress(out, int(os.environ["BENCH_EXPECTED"]))
        if mode == "raw":
            asyncio.run(run_raw(progress))
        elif mode == "naive":
            run_naive(progress)
        else:
            raise SystemExit(f"unknown mode {mode!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
