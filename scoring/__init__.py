"""The pure scoring core of tierstream.

Rolling RFM state, R/F/M scores, tier and segment rules and the engine that turns an
event into explained tier changes. Nothing here does I/O: no Kafka, Redis or Faust
import is allowed (ruff TID251 enforces it), so the embedded replay and the streaming
worker run exactly the same code.
"""

from scoring.config import ScoringConfig, load_config_text
from scoring.engine import Scorer
from scoring.events import (
    DeadLetter,
    EngagementEvent,
    InputEvent,
    PurchaseEvent,
    RfmValues,
    TierChange,
)
from scoring.state import CustomerState

__all__ = [
    "CustomerState",
    "DeadLetter",
    "EngagementEvent",
    "InputEvent",
    "PurchaseEvent",
    "RfmValues",
    "Scorer",
    "ScoringConfig",
    "TierChange",
    "load_config_text",
]
