"""`tierstream config validate` counts the RFM segments by name, not by rule."""

from __future__ import annotations

from tierstream.config_cli import _summary
from tierstream.settings import load_scoring_config


def test_the_default_config_has_eleven_segments_in_fourteen_rules() -> None:
    summary = _summary(load_scoring_config(None))
    assert "tiers VIP/A/B/C, 11 segments (14 rules)," in summary
