"""Runtime settings, read once from the environment (prefix TIERSTREAM_) at the entrypoint."""

from __future__ import annotations

import tempfile
from datetime import datetime
from importlib import resources
from importlib.abc import Traversable
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict

from scoring.config import ScoringConfig, load_config_text
from tierstream.clock import Clock, EventClock, WallClock
from tierstream.kafka_settings import KafkaSettings

# Package data (configs/default.yaml in the repository, linked into the package), so an
# installed wheel finds it as well as a checkout does.
DEFAULT_CONFIG: Traversable = resources.files("tierstream") / "configs" / "default.yaml"


# Renamed settings: the environment name -> its former names, still accepted.
FORMER_NAMES: dict[str, tuple[str, ...]] = {}


def _env(name: str, *old_names: str) -> AliasChoices:
    """The environment names of a renamed setting: the new one first, then the old ones
    (a validation alias replaces the TIERSTREAM_ prefix, so it is spelled out here)."""
    FORMER_NAMES[f"TIERSTREAM_{name}"] = tuple(f"TIERSTREAM_{n}" for n in old_names)
    return AliasChoices(*(f"TIERSTREAM_{n}" for n in (name, *old_names)))


class Settings(KafkaSettings):
    """Every TIERSTREAM_ setting; the Kafka connection ones are KafkaSettings'."""

    # populate_by_name: fields with a compatibility alias (below) still take their own name.
    model_config = SettingsConfigDict(
        env_prefix="TIERSTREAM_", extra="ignore", populate_by_name=True
    )

    redis_url: str = "redis://127.0.0.1:6379/0"
    app_id: str = "tierstream"
    config: Path | None = None
    # A positive number of days, or "lifetime"; overrides the config file's window_days.
    window_days: int | Literal["lifetime"] | None = None
    topic_purchases: str = "purchases"
    topic_engagements: str = "engagements"
    topic_tier_changes: str = "tier-changes"
    topic_dead_letters: str = "dead-letters"
    # Erasure requests (tierstream.erasure): keyed by customer id, partitioned like the inputs.
    topic_erasures: str = "erasures"
    # Customer traits (compacted, keyed by customer id): docs/custom-criteria.md.
    topic_profiles: str = "customer-profiles"
    partitions: int = Field(default=4, ge=1)
    redis_namespace: str = "ts"
    # "wall": now is real time (production). "event": now is the latest event time seen,
    # for backfilling history through Kafka.
    clock: Literal["wall", "event"] = "wall"
    # Start the wall clock at this instant (running at real speed): for rehearsals.
    clock_start: datetime | None = None
    # Events dated further than this after real time are dead-lettered (under both clocks).
    max_future_seconds: float = Field(default=86_400, gt=0)
    batch_max: int = Field(default=500, ge=1)  # events per atomic step
    # How long the consumer group waits for a silent worker (killed, frozen, cut off)
    # before its partitions go to the others. Kafka's brokers accept 6-300 s by default.
    kafka_session_timeout: float = Field(default=10.0, ge=6.0, le=300.0)
    batch_within: float = Field(default=0.02, gt=0)  # seconds to wait to fill a batch
    timer_interval: float = Field(default=0.5, gt=0)  # how often due rescoring runs
    web_port: int | None = None  # Faust's own web server (its /, /router, ...), off when unset
    # The HTTP API and dashboard (tierstream.api): `tierstream serve` listens on api_port
    # (default 8080); the worker serves the same API too when api_port is set.
    api_host: str = "127.0.0.1"
    api_port: int | None = Field(default=None, ge=1, le=65535)
    # When set, every API route but /healthz (and the dashboard's static page) needs
    # `Authorization: Bearer <token>`.
    api_token: SecretStr | None = None
    # Seconds the API reuses tier and segment sizes (counted by a scan of every state).
    sizes_ttl: float = Field(default=5.0, gt=0)
    # Tier changes kept per customer for the API (0: none); see docs/state-layout.md.
    history_length: int = Field(default=5, ge=0, le=100)
    # Quintile scoring only: how often the cut points are recomputed from the population,
    # and how often workers look for a newer published version.
    threshold_refresh_seconds: float = Field(default=3600, gt=0)
    threshold_check_seconds: float = Field(default=5, gt=0)
    # How often workers look for a newer behaviour model (tierstream behaviours). The old
    # name TIERSTREAM_SEGMENTS_CHECK_SECONDS is still accepted (the new one wins).
    behaviours_check_seconds: float = Field(
        default=5, gt=0, validation_alias=_env("BEHAVIOURS_CHECK_SECONDS", "SEGMENTS_CHECK_SECONDS")
    )
    # How often workers look for a newer scoring config version (tierstream config apply).
    config_check_seconds: float = Field(default=5, gt=0)
    # Behaviours learned from the stream by the workers themselves (docs/behaviours.md,
    # "Learned from the stream"); off by default: it adds behaviour segments to output.
    # The old name TIERSTREAM_LEARN_SEGMENTS is still accepted (the new one wins).
    learn_behaviours: bool = Field(
        default=False, validation_alias=_env("LEARN_BEHAVIOURS", "LEARN_SEGMENTS")
    )
    learn_k: int = Field(default=5, ge=1, le=50)
    learn_seed_customers: int = Field(default=1000, ge=1)  # first customers seeding v1
    learn_merge_seconds: float = Field(default=5, gt=0)  # how often statistics are merged
    # A new version is published when a centroid moved more than this (standardized units).
    learn_publish_distance: float = Field(default=0.05, gt=0)
    # Forgetting: a customer's learned contribution weighs 2^(-days since its last purchase
    # / this); 0 (default): every customer weighs 1 (docs/behaviours.md, "Forgetting").
    learn_half_life_days: float = Field(default=0, ge=0)
    # Where Faust keeps its (small) local data directory.
    data_dir: Path = Path(tempfile.gettempdir()) / "tierstream-faust"

    @field_validator("api_token", mode="before")
    @classmethod
    def _token(cls, value: object) -> object:
        # An empty token used to mean "no authentication": a typo in a secret store then
        # opened the API. Unset the variable to serve without a token.
        if isinstance(value, str) and not value.strip():
            raise ValueError("must not be empty (unset TIERSTREAM_API_TOKEN to turn auth off)")
        return value

    @field_validator("window_days", mode="before")
    @classmethod
    def _window(cls, value: object) -> object:
        if isinstance(value, str) and value.strip().isdigit():
            number = int(value)
            if number < 1:
                raise ValueError("window_days must be a positive integer or 'lifetime'")
            return number
        return value

    @property
    def topic_account_contributions(self) -> str:
        """The internal topic of B2B accounts' contribution updates (streams/accounts.py),
        partitioned like the inputs and named after the app (one per deployment)."""
        return f"{self.app_id}-account-contributions"

    def make_clock(self) -> Clock:
        if self.clock == "event":
            return EventClock()
        return WallClock(self.clock_start)

    def scoring_config(self) -> ScoringConfig:
        return load_scoring_config(self.config, self.window_days)


def load_scoring_config(
    path: Path | None, window_days: int | Literal["lifetime"] | None = None
) -> ScoringConfig:
    """The YAML config at ``path`` (default: the packaged configs/default.yaml), window
    optionally overridden."""
    source: Path | Traversable = path or DEFAULT_CONFIG
    try:
        text = source.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(f"scoring config not found: {source}") from None
    config = load_config_text(text)
    if window_days is not None:
        days = None if window_days == "lifetime" else window_days
        config = config.model_copy(update={"window_days": days})
    return config
