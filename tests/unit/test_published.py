"""The one reader of published versions: parsed once per distinct bytes, re-read when due."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from tierstream.published import THRESHOLDS_META, Watched, thresholds


class Meta:
    """The metadata part of a store, counting reads."""

    def __init__(self) -> None:
        self.values: dict[str, bytes] = {}
        self.reads = 0

    def get_meta(self, name: str) -> bytes | None:
        self.reads += 1
        return self.values.get(name)


def counting(parsed: list[bytes]) -> Callable[[bytes], str]:
    def parse(raw: bytes) -> str:
        parsed.append(raw)
        return raw.decode().upper()

    return parse


def test_nothing_published_is_none_without_a_parse() -> None:
    parsed: list[bytes] = []
    store = Meta()
    watched = Watched(store, "k", counting(parsed))
    assert watched.read() is None
    store.values["k"] = b""
    assert watched.read() is None
    assert parsed == []


def test_the_same_bytes_are_parsed_once_and_new_bytes_again() -> None:
    parsed: list[bytes] = []
    store = Meta()
    watched = Watched(store, "k", counting(parsed))
    store.values["k"] = b"v1"
    assert watched.read() == "V1"
    assert watched.read() == "V1"
    store.values["k"] = b"v2"
    assert watched.read() == "V2"
    assert parsed == [b"v1", b"v2"]
    assert store.reads == 3


def test_a_parse_that_raises_is_not_cached() -> None:
    store = Meta()
    watched = Watched(store, THRESHOLDS_META, thresholds)
    store.values[THRESHOLDS_META] = b"not json"
    for _ in range(2):
        with pytest.raises(ValueError):
            watched.read()
    assert watched.value is None


def test_refresh_reads_at_most_every_period_and_a_failed_read_again_at_once() -> None:
    store = Meta()
    store.values["k"] = b"v1"
    watched = Watched(store, "k", counting([]), every=3600.0)
    failing = True

    async def run(call: Callable[[], bytes | None]) -> bytes | None:
        if failing:
            raise OSError("store down")
        return call()

    async def scenario() -> None:
        nonlocal failing
        with pytest.raises(OSError):
            await watched.refresh(run)
        failing = False
        assert await watched.refresh(run) == "V1"  # the failed read did not count
        store.values["k"] = b"v2"
        assert await watched.refresh(run) == "V1"  # within the period: not read again
        watched.checked = None
        assert await watched.refresh(run) == "V2"

    asyncio.run(scenario())
    assert store.reads == 2


def test_claim_holds_the_period_whatever_the_read_gives() -> None:
    watched = Watched(Meta(), "k", counting([]), every=3600.0)
    assert watched.claim()
    assert not watched.claim()
    assert not watched.due()
