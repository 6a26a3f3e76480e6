"""Tier-change headers, subscriptions and their delivery, with the real worker and Kafka."""

from __future__ import annotations

import json

from streams.change_headers import HEADER_FIELDS, header_dict
from tests.integration.pipeline import subset
from tests.integration.subscribers import read_with_headers


def test_every_tier_change_carries_headers_that_match_its_value(make_pipeline, cdnow_events):
    pipeline = make_pipeline()
    pipeline.produce(subset(cdnow_events, "00300"))
    pipeline.start_worker()
    pipeline.wait_applied()
    pipeline.wait_quiet()
    records = read_with_headers(pipeline.bootstrap, pipeline.topics["tier-changes"])
    assert records
    for record in records:
        change, headers = json.loads(record.value), header_dict(record.headers)
        assert headers["entity"] == "customer"
        for name, field in HEADER_FIELDS:
            assert headers[name] == (change.get(field) or ""), (name, change)
    assert any(
        header_dict(r.headers)["tier"] == header_dict(r.headers)["previous_tier"] for r in records
    )
