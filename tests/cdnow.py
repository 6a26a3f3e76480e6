"""The bundled CDNOW history as tierstream reads it, parsed once per test session.

Parsing the 69,659 purchases takes about two seconds; a dozen test modules start from
them, most keeping a subset of customers. The events are frozen models and the history a
tuple, so no test can change what another one reads.
"""

from __future__ import annotations

import functools

from scoring.events import InputEvent
from tierstream.readers import bundled_cdnow_path, read_events
from tierstream.replay import ReplayStats, collect


@functools.cache
def cdnow_history() -> tuple[InputEvent, ...]:
    """Every CDNOW purchase, in the file's order (what ``collect`` returns)."""
    return tuple(collect(read_events(bundled_cdnow_path(), "cdnow"), ReplayStats(), strict=False))
