"""Published scoring config versions: numbering, no-op refusal, races, window growth,
and what a worker keeps across versions."""

from __future__ import annotations

import pytest

from scoring.config import load_config_text
from scoring.engine import Scorer
from streams.config_follower import adopt_published, successor
from tierstream.config_store import window_growth
from tierstream.config_versions import (
    CONFIG_META,
    ConcurrentApplyError,
    NoChangeError,
    publish,
    published,
    published_version,
    version_meta,
)
from tierstream.settings import DEFAULT_CONFIG, Settings
from tierstream.stores.memory import MemoryStore

TEXT = DEFAULT_CONFIG.read_text()
OTHER = TEXT.replace('{name: VIP, min_score: "4.2"}', '{name: VIP, min_score: "4.0"}')


def test_versions_grow_and_every_one_is_kept() -> None:
    store = MemoryStore(partitions=2)
    first = publish(store, TEXT, "default.yaml")
    second = publish(store, OTHER, "other.yaml")
    back = publish(store, TEXT, "version 1")  # a roll back is a new version
    assert [first.version, second.version, back.version] == [1, 2, 3]
    current = published(store)
    assert current is not None and current.version == 3 and current.text == TEXT
    assert current.sha256 == first.sha256
    kept = published_version(store, 2)
    assert kept is not None and kept.text == OTHER and kept.source == "other.yaml"


def test_applying_the_version_in_force_is_refused() -> None:
    store = MemoryStore(partitions=2)
    publish(store, TEXT, "a")
    with pytest.raises(NoChangeError, match="already version 1"):
        publish(store, TEXT, "a")


def test_a_racing_apply_that_lost_the_version_number_says_so() -> None:
    store = MemoryStore(partitions=2)
    publish(store, TEXT, "a")
    store.set_meta_if_absent(version_meta(2), b"someone else's version 2")
    with pytest.raises(ConcurrentApplyError, match="version 2"):
        publish(store, OTHER, "b")
    current = published(store)
    assert current is not None and current.version == 1  # nothing half-published


def test_only_a_longer_window_is_flagged() -> None:
    base = load_config_text(TEXT)
    shorter = base.model_copy(update={"window_days": 180})
    lifetime = base.model_copy(update={"window_days": None})
    assert window_growth(base, shorter) is None
    assert window_growth(lifetime, base) is None
    message = window_growth(shorter, base)
    assert message is not None and "180 days to 365 days" in message
    message = window_growth(base, lifetime)
    assert message is not None and "lifetime" in message


def test_a_successor_keeps_the_behaviour_model_and_applies_the_window_override() -> None:
    store = MemoryStore(partitions=2)
    entry = publish(store, OTHER, "other.yaml")
    scorer = Scorer(load_config_text(TEXT))
    nxt = successor(scorer, entry, 90)
    assert nxt.config.window_days == 90
    assert nxt.config.tiers.levels[0].min_score == 4
    assert nxt.behaviour is scorer.behaviour


def test_readers_adopt_only_a_newer_valid_version() -> None:
    store = MemoryStore(partitions=2)
    publish(store, OTHER, "other.yaml")
    raw = store.get_meta(CONFIG_META)
    scorer = Scorer(load_config_text(TEXT))
    settings = Settings()
    adopted = adopt_published(raw, scorer, 0, settings)
    assert adopted is not None and adopted[1] == 1
    assert adopted[0].config.tiers.levels[0].min_score == 4
    assert adopt_published(raw, scorer, 1, settings) is None  # not newer
    assert adopt_published(None, scorer, 0, settings) is None  # nothing published
    broken = raw.replace(b"window_days: 365", b"window_days: -1") if raw else b""
    assert adopt_published(broken, scorer, 0, settings) is None  # invalid here: kept
