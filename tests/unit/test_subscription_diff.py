"""What `tierstream deliver` does when the published subscriptions change: the diff."""

from __future__ import annotations

from typing import Any

from scoring.reactions import Subscription
from streams.deliver_follow import SubscriptionDiff, diff_subscriptions, missing_topics


def subscription(name: str, **fields: Any) -> Subscription:
    return Subscription.model_validate({"name": name, "topic": f"{name}-topic", **fields})


def hooked(name: str, url: str = "https://crm.example.com/hook", **hook: Any) -> Subscription:
    return subscription(name, webhook={"url": url, "secret_env": "HOOK_SECRET", **hook})


def running(*subscriptions: Subscription) -> dict[str, Subscription]:
    return {s.name: s for s in subscriptions}


def test_the_same_subscriptions_are_no_change() -> None:
    same = (subscription("a", when={"entered_tier": "VIP"}), hooked("b"))
    diff = diff_subscriptions(running(*same), same)
    assert diff == SubscriptionDiff()
    assert not diff


def test_equal_definitions_parsed_apart_are_no_change() -> None:
    first = subscription("a", when={"entered_tier": "VIP", "cause": ["purchase"]})
    again = subscription("a", when={"cause": "purchase", "entered_tier": ["VIP"]})
    assert not diff_subscriptions(running(first), [again])


def test_added_changed_and_removed_are_told_apart_by_name() -> None:
    vip = subscription("vip", when={"entered_tier": "VIP"})
    left = subscription("left", when={"left_tier": "VIP"})
    gone = hooked("gone")
    new = subscription("new")
    narrower = subscription("vip", when={"entered_tier": "VIP", "cause": ["purchase"]})
    diff = diff_subscriptions(running(vip, left, gone), [narrower, left, new])
    assert diff.added == (new,)
    assert diff.changed == (narrower,)
    assert diff.removed == ("gone",)
    assert diff


def test_a_new_topic_or_webhook_setting_is_a_change() -> None:
    old = hooked("h")
    assert diff_subscriptions(running(old), [hooked("h", url="https://b.example.com/x")]).changed
    assert diff_subscriptions(running(old), [hooked("h", max_attempts=3)]).changed
    moved = old.model_copy(update={"topic": "elsewhere"})
    assert diff_subscriptions(running(old), [moved]).changed == (moved,)


def test_nothing_wanted_removes_everything_and_nothing_running_adds_everything() -> None:
    a, b = subscription("a"), hooked("b")
    assert diff_subscriptions(running(a, b), []) == SubscriptionDiff(removed=("a", "b"))
    assert diff_subscriptions({}, [a, b]) == SubscriptionDiff(added=(a, b))


def test_missing_topics_name_each_one_and_how_to_create_them() -> None:
    assert missing_topics({"tier-changes", "x"}, ["tier-changes", "x", None]) is None
    assert missing_topics({"tier-changes"}, ["tier-changes", "x", "y"]) == (
        "topic(s) x, y do not exist: run `tierstream topics create`"
    )
