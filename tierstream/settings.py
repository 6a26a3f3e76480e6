"""Runtime settings, read once from the environment (prefix TIERSTREAM_) at the entrypoint."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from scoring.config import ScoringConfig, load_config_text

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "default.yaml"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TIERSTREAM_", extra="ignore")

    kafka_bootstrap: str = "127.0.0.1:9092"
    redis_url: str = "redis://127.0.0.1:6379/0"
    app_id: str = "tierstream"
    config: Path | None = None
    # A positive number of days, or "lifetime"; overrides the config file's window_days.
    window_days: int | Literal["lifetime"] | None = None
    topic_purchases: str = "purchases"
    topic_engagements: str = "engagements"
    topic_tier_changes: str = "tier-changes"
    topic_dead_letters: str = "dead-letters"
    partitions: int = Field(default=4, ge=1)

    @field_validator("window_days", mode="before")
    @classmethod
    def _window(cls, value: object) -> object:
        if isinstance(value, str) and value.strip().isdigit():
            number = int(value)
            if number < 1:
                raise ValueError("window_days must be a positive integer or 'lifetime'")
            return number
        return value

    def scoring_config(self) -> ScoringConfig:
        return load_scoring_config(self.config, self.window_days)


def load_scoring_config(
    path: Path | None, window_days: int | Literal["lifetime"] | None = None
) -> ScoringConfig:
    """The YAML config at ``path`` (default: configs/default.yaml), window optionally overridden."""
    source = path or DEFAULT_CONFIG
    try:
        text = source.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(f"scoring config not found: {source}") from None
    config = load_config_text(text)
    if window_days is not None:
        days = None if window_days == "lifetime" else window_days
        config = config.model_copy(update={"window_days": days})
    return config
