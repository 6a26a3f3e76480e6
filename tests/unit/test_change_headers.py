"""The Kafka headers of a tier change: taken from its value, empty when absent."""

from __future__ import annotations

import json

from streams.change_headers import change_headers, header_dict


def test_headers_mirror_the_change_value_with_empty_strings_for_absent_fields() -> None:
    value = json.dumps(
        {
            "new_tier": "VIP",
            "previous_tier": None,
            "new_segment": "Champions",
            "previous_segment": "Loyal",
            "new_behaviour": None,
            "cause": "purchase",
        }
    ).encode()
    headers = change_headers(value)
    assert [name for name, _ in headers] == [
        "tier",
        "previous_tier",
        "segment",
        "previous_segment",
        "behaviour",
        "previous_behaviour",
        "cause",
        "entity",
    ]
    assert header_dict(headers) == {
        "tier": "VIP",
        "previous_tier": "",
        "segment": "Champions",
        "previous_segment": "Loyal",
        "behaviour": "",
        "previous_behaviour": "",
        "cause": "purchase",
        "entity": "customer",
    }


def test_a_value_that_is_not_a_json_object_still_gets_every_header() -> None:
    assert header_dict(change_headers(b"not json")) == {
        **dict.fromkeys(["tier", "previous_tier", "segment", "previous_segment", "behaviour"], ""),
        "previous_behaviour": "",
        "cause": "",
        "entity": "customer",
    }
