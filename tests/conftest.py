from __future__ import annotations

from pathlib import Path

import pytest

from scoring.config import ScoringConfig
from tierstream.settings import DEFAULT_CONFIG, load_scoring_config

ROOT = Path(__file__).resolve().parent.parent

# The real-services fixtures (kafka_bootstrap, redis_url, redis_client), for every test dir.
pytest_plugins = ["tests.services"]


@pytest.fixture(scope="session")
def default_config() -> ScoringConfig:
    return load_scoring_config(DEFAULT_CONFIG)


@pytest.fixture(scope="session")
def no_hysteresis_config(default_config: ScoringConfig) -> ScoringConfig:
    """The default config with hysteresis off, so scores are a function of values alone."""
    scores = default_config.scores
    dims = {
        name: getattr(scores, name).model_copy(update={"hysteresis": 0})
        for name in ("recency", "frequency", "monetary", "engagement")
    }
    return default_config.model_copy(update={"scores": scores.model_copy(update=dims)})
