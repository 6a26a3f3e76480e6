"""Write the JSON Schemas of tierstream's topics to schemas/ (``make schemas``).

The pydantic models in scoring/events.py (and the erasure request in tierstream/erasure.py)
are the source; a test keeps the files current.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from scoring.events import DeadLetter, EngagementEvent, PurchaseEvent, TierChange
from scoring.profiles import ProfileUpdate
from tierstream.erasure import ErasureRequest

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "schemas"
MODELS: dict[str, type[BaseModel]] = {
    "purchase.schema.json": PurchaseEvent,
    "engagement.schema.json": EngagementEvent,
    "tier-change.schema.json": TierChange,
    "dead-letter.schema.json": DeadLetter,
    "erasure.schema.json": ErasureRequest,
    "profile.schema.json": ProfileUpdate,
}


def render(model: type[BaseModel]) -> str:
    schema: dict[str, Any] = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        **model.model_json_schema(mode="validation"),
    }
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def main() -> None:
    SCHEMA_DIR.mkdir(exist_ok=True)
    for name, model in MODELS.items():
        (SCHEMA_DIR / name).write_text(render(model), encoding="utf-8")
        print(f"wrote schemas/{name}")


if __name__ == "__main__":
    main()
