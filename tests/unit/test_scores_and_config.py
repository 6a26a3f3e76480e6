from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from pydantic import ValidationError

from scoring.config import Dimension, load_config_text
from scoring.scores import Scale, quantile_cuts, raw_score
from tierstream.settings import DEFAULT_CONFIG, Settings, load_scoring_config

CUTS = (Decimal(30), Decimal(60), Decimal(120), Decimal(250))


@pytest.mark.parametrize(("value", "expected"), [(0, 1), (29, 1), (30, 2), (250, 5), (10_000, 5)])
def test_higher_is_better_scores(value, expected):
    assert raw_score(Decimal(value), CUTS, True) == expected


@pytest.mark.parametrize(
    ("recency", "expected"), [(0, 5), (30, 5), (31, 4), (250, 2), (251, 1), (120, 3)]
)
def test_recency_scores(recency, expected):
    assert raw_score(recency, CUTS, False) == expected


def test_hysteresis_holds_a_score_near_its_cut():
    scale = Scale.build(
        CUTS,
        Dimension(thresholds=CUTS, hysteresis=Decimal("0.1")),
        higher_is_better=True,
        relative=True,
    )
    assert scale.score(Decimal(61), None) == 3  # first score: plain cuts
    assert scale.score(Decimal(61), 2) == 2  # 61 < 60 * 1.1: not enough to move up
    assert scale.score(Decimal(66), 2) == 3
    assert scale.score(Decimal(55), 3) == 3  # 55 > 60 * 0.9: not enough to move down
    assert scale.score(Decimal(53), 3) == 2


def test_quantile_cuts_split_a_population_and_handle_ties():
    values = list(range(1, 101))
    assert quantile_cuts(values) == tuple(Decimal(v) for v in (21, 41, 61, 81))
    mostly_ones = [1] * 80 + [2] * 10 + [3] * 10
    cuts = quantile_cuts(mostly_ones)
    assert raw_score(1, cuts, True) == 1  # the tie does not inflate everyone's score
    assert cuts == (Decimal(2), Decimal(3), Decimal("Infinity"), Decimal("Infinity"))
    recency = quantile_cuts(list(range(0, 100)), higher_is_better=False)
    assert raw_score(0, recency, False) == 5 and raw_score(99, recency, False) == 1


def test_default_config_loads_and_covers_every_score():
    config = load_scoring_config(DEFAULT_CONFIG)
    assert config.window_days == 365
    assert [level.name for level in config.tiers.levels] == ["VIP", "A", "B", "C"]
    assert {s.name for s in config.segments} == {
        "Champions",
        "Loyal",
        "Potential loyalist",
        "New",
        "Promising",
        "Need attention",
        "About to sleep",
        "At risk",
        "Cannot lose them",
        "Hibernating",
        "Lost",
    }


def test_config_rejects_a_segment_gap():
    text = DEFAULT_CONFIG.read_text().replace(
        "- {name: Lost,               r: [1, 1], fm: [1, 2]}", ""
    )
    with pytest.raises(ValidationError, match="no segment rule matches"):
        load_config_text(text)


def test_config_rejects_weights_not_summing_to_one():
    text = DEFAULT_CONFIG.read_text().replace('e: "0.10"', 'e: "0.20"')
    with pytest.raises(ValidationError, match="sum to 1"):
        load_config_text(text)


def test_window_override_and_settings(monkeypatch, tmp_path: Path):
    assert load_scoring_config(None, "lifetime").window_days is None
    assert load_scoring_config(None, 90).window_days == 90
    monkeypatch.setenv("TIERSTREAM_WINDOW_DAYS", "30")
    monkeypatch.setenv("TIERSTREAM_APP_ID", "x")
    settings = Settings()
    assert settings.window_days == 30 and settings.app_id == "x"
    assert settings.scoring_config().window_days == 30
    with pytest.raises(FileNotFoundError):
        load_scoring_config(tmp_path / "missing.yaml")
