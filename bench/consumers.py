"""The three baselines, each a subprocess like the worker, timed the same way.

``python -m bench.consumers raw|naive|peer OUT`` with settings in the environment
(``BENCH_BOOTSTRAP``, ``BENCH_TOPICS`` comma-separated, ``BENCH_GROUP``,
``BENCH_EXPECTED``, for naive ``BENCH_REDIS_URL``, ``BENCH_NAMESPACE``,
``BENCH_PARTITIONS``, and for peer ``BENCH_OUTPUT_TOPIC``, ``BENCH_STATE_DIR``).

* ``raw``: an aiokafka consumer in a consumer group, from the earliest offset, that reads
  every message and ``json.loads`` its value. Nothing else: the ceiling for any Python
  consumer of these topics on this machine.
* ``naive``: the tutorial way to keep per-customer aggregates in Redis from Faust: one agent
  (concurrency 1), JSON values, and for every event one awaited ``redis.asyncio``
  round trip (a pipeline of ``HINCRBYFLOAT`` of the amount or ``HINCRBY`` of the
  engagement count, plus ``HSET`` of the last-seen time). No batching, no exactly-once.
* ``peer``: a stateful stream processor built the way its library intends, the nearest
  peer of the worker: a quix-streams application over both topics (concatenated, so one
  RocksDB store per partition sees a customer's purchases and engagements) that keeps per
  customer the purchase count, the net amount (refunds subtract, exact decimals) and the
  last purchase time in its state, with the changelog topic quix creates for it, and
  produces one JSON message per event (the customer's aggregates after it) to an output
  topic. At-least-once, quix's default.

All write JSON lines to OUT with ``time.monotonic()`` stamps (one clock for all
processes on Linux): ``{"first": t}`` at the first event, ``{"n": count, "t": t}`` every
1% of the expected events, and ``{"done": t, "n": count}`` once the expected count is
done. The parent times from the moment it spawned the process.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from datetime import datetime
from decimal import Decimal
from typing import IO, Any

from tierstream.kafka_settings import KafkaSettings


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
        """Count ``n`` events; True (once) when the expected count is reached. The caller
        then calls ``finish`` when they are done by its own definition."""
        before = self.count
        self.count += n
        now = time.monotonic()
        if before == 0:
            self.write({"first": now})
        if self.count // self.step != before // self.step:
            self.write({"n": self.count, "t": now})
        return self.count >= self.expected > before

    def finish(self) -> None:
        self.write({"done": time.monotonic(), "n": self.count})


async def run_raw(progress: Progress) -> None:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        *os.environ["BENCH_TOPICS"].split(","),
        bootstrap_servers=os.environ["BENCH_BOOTSTRAP"],
        group_id=os.environ["BENCH_GROUP"],
        auto_offset_reset="earliest",
        **KafkaSettings().client_options(),
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
                    progress.finish()
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
        broker_credentials=KafkaSettings().faust_credentials(),
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
            if progress.add():
                progress.finish()

    worker = faust.Worker(app, loglevel="WARNING", quiet=True)
    worker.execute_from_commandline()


def fold_event(event: dict[str, Any], state: Any) -> dict[str, Any]:
    """The peer's per-event step: update (purchases, refunds) or read (engagements) the
    customer's aggregates in the quix state; the message to produce for this event."""
    purchases, net, last = state.get("agg") or (0, "0", None)
    if "amount" in event:
        # Decimal via str: exact whether the JSON carries a string or a number.
        amount = Decimal(str(event["amount"]))
        if event.get("kind") == "refund":
            net = str(Decimal(net) - amount)
        else:
            net = str(Decimal(net) + amount)
            purchases += 1
            at = event["occurred_at"]
            # Late events exist: keep the latest instant, not the latest arrival.
            if last is None or datetime.fromisoformat(at) > datetime.fromisoformat(last):
                last = at
        state.set("agg", (purchases, net, last))
    return {
        "customer_id": event["customer_id"],
        "event_id": event["event_id"],
        "purchases": purchases,
        "net_amount": net,
        "last_purchase_at": last,
    }


def run_peer(progress: Progress) -> None:
    from quixstreams import Application

    app: Application

    def processed(_topic: str, _partition: int, _offset: int) -> None:
        if progress.add():
            app.stop()  # run() then commits its last checkpoint and returns

    app = Application(
        broker_address=os.environ["BENCH_BOOTSTRAP"],
        consumer_group=os.environ["BENCH_GROUP"],
        auto_offset_reset="earliest",
        state_dir=os.environ["BENCH_STATE_DIR"],
        on_message_processed=processed,
        # Merged topics are read in timestamp order: at the end of the (finite) input the
        # last messages wait for one idle poll. 1 s by default; 0.1 s is the interval at
        # which the worker's progress is polled, so neither waits longer for its last batch.
        consumer_poll_timeout=0.1,
        loglevel="WARNING",
    )
    purchases, engagements = (
        app.dataframe(app.topic(name, value_deserializer="json"))
        for name in os.environ["BENCH_TOPICS"].split(",")
    )
    # One dataframe over both topics: one state store, so engagements see the purchases.
    events = purchases.concat(engagements)
    events = events.apply(fold_event, stateful=True)
    events.to_topic(app.topic(os.environ["BENCH_OUTPUT_TOPIC"], value_serializer="json"))
    app.run()
    # Done = the final checkpoint committed: state flushed to RocksDB and its changelog,
    # outputs delivered, input offsets committed (then the consumer closed).
    progress.finish()


def main(argv: list[str]) -> int:
    mode, out_path = argv
    with open(out_path, "w", encoding="utf-8") as out:
        progress = Progress(out, int(os.environ["BENCH_EXPECTED"]))
        if mode == "raw":
            asyncio.run(run_raw(progress))
        elif mode == "naive":
            run_naive(progress)
        elif mode == "peer":
            run_peer(progress)
        else:
            raise SystemExit(f"unknown mode {mode!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
