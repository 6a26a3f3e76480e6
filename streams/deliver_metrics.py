"""Prometheus metrics of ``tierstream deliver``: per subscription, on a registry of its own.

Delivery runs apart from scoring (its own consumer groups), so the worker's metrics say
nothing about it. These say what an operator of webhooks needs: how many changes matched,
reached the derived topic, were delivered, how many attempts that took, how many were
dead-lettered, and how far each subscription is behind ``tier-changes`` (records fetched
by Kafka but not yet delivered and committed count as lag).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from streams.deliver import SubscriptionLoop

# (metric name, Counts field, help): one counter per field, labelled by subscription.
COUNTERS = (
    ("tierstream_deliver_matched", "matched", "Tier changes a subscription's `when` matched"),
    ("tierstream_deliver_to_topic", "to_topic", "Matching changes written to the derived topic"),
    ("tierstream_deliver_delivered", "delivered", "Matching changes a webhook answered with 2xx"),
    ("tierstream_deliver_attempts", "attempts", "Webhook POSTs, retries included"),
    (
        "tierstream_deliver_dead_lettered",
        "dead_lettered",
        "Changes dead-lettered after the webhook's last attempt failed",
    ),
)


class DeliveryCollector(Collector):
    """Reads the loops' counts and lag when scraped (nothing on the delivery path)."""

    def __init__(self, loops: Sequence[SubscriptionLoop]) -> None:
        self.loops = loops

    def collect(self) -> Iterator[Metric]:
        for name, field, help_text in COUNTERS:
            family = CounterMetricFamily(name, help_text, labels=["subscription"])
            for loop in self.loops:
                family.add_metric([loop.subscription.name], getattr(loop.counts, field))
            yield family
        lag = GaugeMetricFamily(
            "tierstream_deliver_lag",
            "Records on tier-changes this subscription has not yet delivered and committed",
            labels=["subscription"],
        )
        for loop in self.loops:
            lag.add_metric([loop.subscription.name], loop.lag())
        yield lag


def delivery_registry(loops: Sequence[SubscriptionLoop]) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(DeliveryCollector(loops))
    ProcessCollector(registry=registry)
    return registry
