"""The clock moved to tierstream/clock.py (settings, below streams/, needs it). This name
stays only for code written against the old path while it is merged; import
``tierstream.clock`` instead."""

from tierstream.clock import Clock, EventClock, WallClock

__all__ = ["Clock", "EventClock", "WallClock"]
