"""``tierstream replay --profiles PATH``: the profile updates of a file, for the replay."""

from __future__ import annotations

from pathlib import Path

from scoring.profiles import ProfileUpdate
from tierstream.cli_input import fail, say
from tierstream.profiles_file import in_time_order, read_profiles
from tierstream.readers import Reject

SHOWN_REJECTS = 20


def load_profiles(path: Path) -> list[ProfileUpdate]:
    """The valid updates of ``path`` in time order; each malformed line is one warning
    (the first 20 shown), an unreadable file one line and exit 2."""
    updates: list[ProfileUpdate] = []
    rejected = 0
    try:
        for item in read_profiles(path):
            if isinstance(item, Reject):
                rejected += 1
                if rejected <= SHOWN_REJECTS:
                    say(f"profiles line {item.line}: {item.error}", "yellow")
                continue
            updates.append(item)
    except OSError as exc:
        fail(f"cannot read {exc.filename or path}: {exc.strerror or exc}")
    if rejected > SHOWN_REJECTS:
        say(f"... {rejected - SHOWN_REJECTS:,} more malformed profile lines", "yellow")
    return in_time_order(updates)
