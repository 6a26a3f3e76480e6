"""compact_json writes the very bytes json.dumps writes, whatever the text."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from tierstream.jsonbytes import compact_json

values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


def reference(obj: object, ascii_only: bool) -> bytes:
    text = json.dumps(obj, separators=(",", ":"), ensure_ascii=ascii_only)
    return text.encode("utf-8", "surrogatepass")


@given(values, st.booleans())
def test_the_same_bytes_as_json_dumps(obj: object, ascii_only: bool) -> None:
    assert compact_json(obj, ascii_only=ascii_only) == reference(obj, ascii_only)


def test_astral_characters_control_characters_and_lone_surrogates() -> None:
    for text in ["😀 → ≥ é", "\x00\x1f\x7f\x80\x9f", "\ud800", "a\u2028b", "\U0010ffff"]:
        for ascii_only in (False, True):
            obj = {"reason": text, "n": [1, None, text]}
            assert compact_json(obj, ascii_only=ascii_only) == reference(obj, ascii_only)
