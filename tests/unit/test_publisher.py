"""The outbox publisher: positions, trimming, and failed deliveries sent again in order."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from streams.publisher import Publisher
from tierstream.stores.outbox_codec import CHANGE_ENTRY, DEAD_LETTER_ENTRY


class FakeKafka:
    """Records what was sent; each delivery future is resolved by the test."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None, bytes, asyncio.Future[Any]]] = []

    async def __call__(
        self, topic: str, records: list[tuple[bytes | None, bytes, Any]]
    ) -> list[asyncio.Future[Any]]:
        futures = []
        for key, value, _headers in records:
            future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            self.sent.append((topic, key, value, future))
            futures.append(future)
        return futures

    def values(self) -> list[bytes]:
        return [value for _, _, value, _ in self.sent]


def change(customer: str, version: int) -> bytes:
    return CHANGE_ENTRY + customer.encode() + b"\x00" + f"{customer}-v{version}".encode()


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_entries_go_to_their_topics_and_trim_follows_acknowledgements() -> None:
    async def scenario() -> None:
        kafka = FakeKafka()
        publisher = Publisher(0, kafka, "tier-changes", "dead-letters")
        publisher.start_at(10)
        letter = DEAD_LETTER_ENTRY + b"\x00" + b'{"error":"bad"}'
        await publisher.publish(10, [change("a", 1), letter, change("b", 1)])
        assert [(t, k) for t, k, _, _ in kafka.sent] == [
            ("tier-changes", b"a"),
            ("tier-changes", b"b"),
            ("dead-letters", None),
        ]
        assert await publisher.settle() == 10  # nothing acknowledged yet
        kafka.sent[0][3].set_result(None)  # a-1 (position 10)
        kafka.sent[1][3].set_result(None)  # b-1 (position 12): not contiguous yet
        assert await publisher.settle() == 11
        kafka.sent[2][3].set_result(None)  # the dead letter (position 11)
        assert await publisher.settle() == 13
        assert publisher.published == 3 and publisher.in_flight == 0

    run(scenario())


def test_a_failed_delivery_is_sent_again_with_everything_after_it() -> None:
    async def scenario() -> None:
        kafka = FakeKafka()
        publisher = Publisher(0, kafka, "tier-changes", "dead-letters")
        await publisher.publish(0, [change("a", 1), change("a", 2), change("a", 3)])
        first, second, third = (sent[3] for sent in kafka.sent)
        first.set_exception(RuntimeError("MessageSizeTooLarge"))
        second.set_result(None)
        third.set_result(None)
        assert await publisher.settle() == 0  # a failure holds the trim position
        # A new send of all three, in order, so that a-3 is also the last to arrive.
        assert kafka.values()[3:] == [b"a-v1", b"a-v2", b"a-v3"]
        assert publisher.resent == 3
        for sent in kafka.sent[3:]:
            sent[3].set_result(None)
        assert await publisher.settle() == 3
        assert publisher.in_flight == 0

    run(scenario())


def test_failures_are_not_resent_faster_than_the_backoff() -> None:
    async def scenario() -> None:
        kafka = FakeKafka()
        publisher = Publisher(0, kafka, "tier-changes", "dead-letters")
        await publisher.publish(0, [change("a", 1)])
        kafka.sent[0][3].set_exception(RuntimeError("broker down"))
        await publisher.settle()
        kafka.sent[1][3].set_exception(RuntimeError("still down"))
        await publisher.settle()  # within the backoff: no third send yet
        assert len(kafka.sent) == 2

    run(scenario())


@pytest.mark.parametrize(
    ("error", "outcome"),
    [
        ("ReadOnlyError", "transient"),
        ("BusyLoadingError", "transient"),
        ("ConnectionError", "transient"),
        ("OOM", "transient"),
        ("BUSY", "transient"),
        ("TRYAGAIN", "transient"),
        ("WRONGTYPE", "fatal"),
        ("FencedError", "redo"),
        ("OffsetsMovedError", "redo"),
        ("KeyError", "fatal"),
        ("KafkaConnectionError", "transient"),
        ("ProducerSendError(NotLeaderForPartition)", "transient"),
        ("ProducerSendError(MessageSizeTooLarge)", "fatal"),
    ],
)
def test_every_error_has_an_outcome(error: str, outcome: str) -> None:
    from aiokafka import errors as kafka_errors
    from faust.exceptions import ProducerSendError
    from redis import exceptions as redis_errors

    from streams.failures import classify
    from tierstream.stores.base import FencedError, Lease, OffsetsMovedError

    def producer_error(cause: BaseException) -> BaseException:
        try:
            raise ProducerSendError("Error while sending") from cause
        except ProducerSendError as wrapped:
            return wrapped

    errors: dict[str, BaseException] = {
        "ReadOnlyError": redis_errors.ReadOnlyError("You can't write against a read only replica."),
        "BusyLoadingError": redis_errors.BusyLoadingError("Redis is loading the dataset"),
        "ConnectionError": redis_errors.ConnectionError("Connection refused"),
        "OOM": redis_errors.OutOfMemoryError(
            "command not allowed when used memory > 'maxmemory'.", status_code="OOM"
        ),
        "BUSY": redis_errors.ResponseError("BUSY Redis is busy running a script."),
        "TRYAGAIN": redis_errors.ResponseError("TRYAGAIN Multiple keys request during rehashing"),
        "WRONGTYPE": redis_errors.ResponseError("WRONGTYPE Operation against a key"),
        "FencedError": FencedError(Lease(0, 1), 2),
        "OffsetsMovedError": OffsetsMovedError(0, "purchases", 5, 7),
        "KeyError": KeyError("c"),
        "KafkaConnectionError": kafka_errors.KafkaConnectionError("broker down"),
        "ProducerSendError(NotLeaderForPartition)": producer_error(
            kafka_errors.NotLeaderForPartitionError()
        ),
        "ProducerSendError(MessageSizeTooLarge)": producer_error(
            kafka_errors.MessageSizeTooLargeError()
        ),
    }
    assert classify(errors[error]).value == outcome


def test_past_the_in_flight_bound_a_failed_entry_waits_for_its_resend(monkeypatch) -> None:
    """Past MAX_IN_FLIGHT, publish waits for the oldest entry; one that failed is re-sent
    after its backoff (not waited on again in a loop), and publish then returns."""
    import streams.publisher as module

    monkeypatch.setattr(module, "MAX_IN_FLIGHT", 1)

    class FlakyKafka(FakeKafka):
        """Fails the first two sends of every record, delivers later ones at once."""

        async def __call__(self, topic, records):
            futures = await super().__call__(topic, records)
            for _, _, value, future in self.sent[-len(records) :]:
                if self.values().count(value) <= 2:
                    future.set_exception(RuntimeError("broker down"))
                else:
                    future.set_result(None)
            return futures

    async def scenario() -> None:
        kafka = FlakyKafka()
        publisher = Publisher(0, kafka, "tier-changes", "dead-letters")
        await asyncio.wait_for(publisher.publish(0, [change("a", 1), change("a", 2)]), 10)
        assert publisher.in_flight <= 1
        assert kafka.values().count(b"a-v1") == 3  # two failures, then delivered

    run(scenario())
