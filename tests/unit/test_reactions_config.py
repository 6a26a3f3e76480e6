"""Service levels and subscriptions in the scoring config: matching and validation."""

from __future__ import annotations

import pytest
import yaml

from scoring.config import load_config_text
from scoring.reactions import When
from tierstream.settings import DEFAULT_CONFIG


def config_with(**sections: object):  # type: ignore[no-untyped-def]
    raw = yaml.safe_load(DEFAULT_CONFIG.read_text(encoding="utf-8"))
    raw.update(sections)
    return load_config_text(yaml.safe_dump(raw))


def hook(**extra: object) -> dict[str, object]:
    return {"url": "https://crm.example.com/hooks/vip", "secret_env": "VIP_HOOK_SECRET", **extra}


def test_the_shipped_config_has_a_service_level_for_every_tier() -> None:
    config = config_with()
    assert set(config.service_levels) == {level.name for level in config.tiers.levels}
    assert config.subscriptions == ()


def test_a_subscription_from_yaml() -> None:
    config = config_with(
        subscriptions=[
            {"name": "vip-entered", "when": {"entered_tier": "VIP"}, "topic": "vip-entered"},
            {"name": "lost", "when": {"left_segment": ["Champions", "Loyal"]}, "webhook": hook()},
        ]
    )
    vip, lost = config.subscriptions
    assert vip.when.entered_tier == ("VIP",) and vip.webhook is None
    assert lost.webhook is not None and lost.webhook.secret_env == "VIP_HOOK_SECRET"


@pytest.mark.parametrize(
    ("when", "change", "matches"),
    [
        ({"entered_tier": "VIP"}, {"new_tier": "VIP", "previous_tier": "A"}, True),
        ({"entered_tier": "VIP"}, {"new_tier": "VIP", "previous_tier": None}, True),
        ({"entered_tier": "VIP"}, {"new_tier": "VIP", "previous_tier": "VIP"}, False),
        ({"entered_tier": "VIP"}, {"new_tier": "A", "previous_tier": "VIP"}, False),
        ({"left_tier": "VIP"}, {"new_tier": "A", "previous_tier": "VIP"}, True),
        ({"left_tier": "VIP"}, {"new_tier": "VIP", "previous_tier": "VIP"}, False),
        ({"entered_segment": "Lost"}, {"new_segment": "Lost", "previous_segment": "At risk"}, True),
        ({"left_behaviour": "bargain"}, {"previous_behaviour": "bargain"}, True),
        ({"cause": ["inactivity"]}, {"cause": "purchase"}, False),
        ({"cause": "purchase", "entered_tier": "A"}, {"cause": "purchase", "new_tier": "A"}, True),
        ({}, {"cause": "refund"}, True),
    ],
)
def test_when_conditions(when: dict[str, object], change: dict[str, object], matches: bool) -> None:
    assert When.model_validate(when).matches(change) is matches


@pytest.mark.parametrize(
    ("sections", "message"),
    [
        (
            {"service_levels": {"Gold": {"response_time": "1h", "channel": "x", "owner": "y"}}},
            "unknown tier 'Gold'",
        ),
        (
            {"subscriptions": [{"name": "s", "when": {"entered_tier": "Gold"}, "topic": "t"}]},
            "unknown tier 'Gold'",
        ),
        (
            {"subscriptions": [{"name": "s", "when": {"left_segment": "Nope"}, "topic": "t"}]},
            "unknown segment 'Nope'",
        ),
        (
            {"subscriptions": [{"name": "s", "when": {"cause": "magic"}, "topic": "t"}]},
            "unknown cause 'magic'",
        ),
        ({"subscriptions": [{"name": "s", "webhook": hook(url="ftp://x")}]}, "http:// or https://"),
        ({"subscriptions": [{"name": "s", "webhook": hook(url="https://")}]}, "url"),
        (
            {"subscriptions": [{"name": "s", "webhook": hook(secret_env="not a name")}]},
            "secret_env",
        ),
        ({"subscriptions": [{"name": "s"}]}, "needs a topic, a webhook or both"),
        (
            {"subscriptions": [{"name": "s", "topic": "a"}, {"name": "s", "topic": "b"}]},
            "defined twice",
        ),
        (
            {"subscriptions": [{"name": "s", "topic": "a", "when": {"entred_tier": "VIP"}}]},
            "entred_tier",
        ),
    ],
)
def test_an_invalid_reaction_is_a_clear_config_error(
    sections: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match="") as raised:
        config_with(**sections)
    assert message in str(raised.value)
